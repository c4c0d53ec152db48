"""A background compaction builds the fresh index beside the old one; one that would not fit in
the memory available is postponed instead of started (the kernel would kill the service,
which would replay, find compaction due again and be killed again): counted apart from the
failures, described with its figures in GetStats, logged once, tried again after a backoff.

The figures come from files the tests write in a tmp dir as /proc and the cgroup v2 tree
would hold them (compaction_memory.MemoryFiles), or from the real ones with a headroom no machine
has; what an index maps from its snapshot from the real /proc/self/maps of a real index
restarted in a tmp dir."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from imagerepo.search.v1 import search_service_pb2 as v1
from imagerepo.search.v2 import search_service_pb2 as v2
from imagerepo.search.v2 import search_service_pb2_grpc as v2_grpc
from search_service import compaction_memory as memory_guard
from search_service import vector_index
from search_service.compaction_memory import (
    AvailableMemory,
    MemoryFiles,
    available_memory,
    compaction_memory,
    mapped_bytes,
)
from search_service.config import SearchConfig
from search_service.durable_index import SNAPSHOT_NAME, DurableIndex
from search_service.engine import EngineParams, SearchIndex
from search_service.snapshot import mapping_of
from search_service.vector_index import AnnParams
from tests.search_service.conftest import serve
from tests.search_service.documents import DIM, doc, unit
from tests.search_service.test_background_compaction import FIRST, QUERIES, image

PARAMS = EngineParams(vector_dim=DIM)
WAIT_S = 30.0
GB = 2**30
MB = 2**20
MEMINFO = """MemTotal:       24683520 kB
MemFree:        19281436 kB
MemAvailable:   {available_kib} kB
Buffers:          103948 kB
"""
STATUS = """Name:\tpython
VmPeak:\t 9000000 kB
VmRSS:\t {rss_kib} kB
RssAnon:\t {anon_kib} kB
RssFile:\t  300000 kB
"""
FACTOR = memory_guard._COMPACT_MEMORY_FACTOR


def proc_files(
    root: Path,
    available_bytes: int = 16 * GB,
    anon_bytes: int = 1 * GB,
    cgroup: str = "0::/\n",
) -> MemoryFiles:
    """/proc/meminfo, /proc/self/status and /proc/self/cgroup as the kernel writes them, in
    `root`, and an empty cgroup v2 tree (no limit) beside them; the real /proc/self/maps."""
    (root / "proc").mkdir(exist_ok=True)
    files = MemoryFiles(
        status=root / "proc" / "status",
        meminfo=root / "proc" / "meminfo",
        cgroup=root / "proc" / "cgroup",
        cgroup_root=root / "cgroup",
    )
    files.meminfo.write_text(MEMINFO.format(available_kib=available_bytes // 1024))
    files.status.write_text(
        STATUS.format(rss_kib=anon_bytes // 1024 + 300000, anon_kib=anon_bytes // 1024)
    )
    files.cgroup.write_text(cgroup)
    files.cgroup_root.mkdir(exist_ok=True)
    return files


def limit_cgroup(
    files: MemoryFiles, path: str, limit: str, current: int, inactive_file: int = 0
) -> None:
    directory = files.cgroup_root / path
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "memory.max").write_text(f"{limit}\n")
    (directory / "memory.current").write_text(f"{current}\n")
    (directory / "memory.stat").write_text(
        f"anon {current - inactive_file}\nfile {inactive_file}\n"
        f"active_file 0\ninactive_file {inactive_file}\n"
    )


# ---- the figures ---------------------------------------------------------------------------


def test_available_memory_is_mem_available_when_no_cgroup_limits_it(tmp_path):
    files = proc_files(tmp_path, available_bytes=3 * GB)
    limit_cgroup(files, "user.slice", "max", 5 * GB)  # not ours, and no limit anyway

    available = available_memory(files)

    assert available == AvailableMemory(3 * GB, f"MemAvailable in {files.meminfo}")


def test_available_memory_is_the_cgroup_limit_less_its_use_when_tighter(tmp_path):
    files = proc_files(tmp_path, available_bytes=16 * GB, cgroup="0::/docker/abc123\n")
    # 1.5 GB charged, of which 256 MB inactive page cache the kernel reclaims first.
    limit_cgroup(files, "docker/abc123", str(2 * GB), 3 * GB // 2, inactive_file=256 * MB)

    available = available_memory(files)

    assert available is not None
    assert available.bytes == 2 * GB - (3 * GB // 2 - 256 * MB)
    assert available.source == "cgroup /docker/abc123: memory.max 2.0 GB - 1.2 GB in use"


def test_a_limit_on_a_parent_cgroup_counts_and_the_tightest_wins(tmp_path):
    # systemd's slice limits, the service's own cgroup has none ("max").
    files = proc_files(
        tmp_path,
        available_bytes=16 * GB,
        cgroup="12:memory:/system.slice/search.service\n0::/system.slice/search.service\n",
    )
    limit_cgroup(files, "system.slice/search.service", "max", 3 * GB)
    limit_cgroup(files, "system.slice", str(8 * GB), 7 * GB)

    available = available_memory(files)

    assert available == AvailableMemory(
        1 * GB, "cgroup /system.slice: memory.max 8.0 GB - 7.0 GB in use"
    )


def test_mem_available_wins_when_tighter_than_the_cgroup(tmp_path):
    # A container (its own cgroup namespace: it sees itself as the root) with a limit.
    files = proc_files(tmp_path, available_bytes=700 * MB)
    limit_cgroup(files, "", str(4 * GB), 1 * GB)

    assert available_memory(files) == AvailableMemory(700 * MB, f"MemAvailable in {files.meminfo}")


def test_no_files_to_read_gives_no_figures(tmp_path):
    files = MemoryFiles(
        status=tmp_path / "status",
        meminfo=tmp_path / "meminfo",
        cgroup=tmp_path / "cgroup",
        cgroup_root=tmp_path / "sys",
    )

    assert available_memory(files) is None
    assert compaction_memory(700, 1000, 0, files) is None


def test_the_estimate_is_anonymous_memory_and_the_snapshot_maps_scaled_by_live_over_numbered(
    tmp_path,
):
    # 1M documents, 700k live: 1.2 GB anonymous, 2.8 GB of the snapshot mapped (2 GB + 0.8 GB),
    # however little of it is resident. Not counted: a replaced snapshot a search still maps,
    # another directory's snapshot, a library, anonymous maps.
    files = proc_files(tmp_path, available_bytes=3 * GB, anon_bytes=1200 * MB)
    data = tmp_path / "data"
    data.mkdir()
    files = MemoryFiles(**{**vars(files), "maps": tmp_path / "proc" / "maps"})
    files.maps.write_text(
        f"7f0000000000-7f0080000000 r--s 00000000 08:01 1234    {data}/{SNAPSHOT_NAME}\n"
        f"7f0080000000-7f00b3333000 r--s 80000000 08:01 1234    {data}/{SNAPSHOT_NAME}\n"
        f"7f0100000000-7f0140000000 r--s 00000000 08:01 1200    {data}/{SNAPSHOT_NAME} (deleted)\n"
        f"7f0200000000-7f0240000000 r--s 00000000 08:01 1300    {data}-old/{SNAPSHOT_NAME}\n"
        "7f0300000000-7f0300200000 r-xp 00000000 08:01 99      /usr/lib/libc.so.6\n"
        "7f0400000000-7f0440000000 rw-p 00000000 00:00 0 \n"
        "7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0       [stack]\n"
    )
    mapped = 2 * GB + 0x33333000

    memory = compaction_memory(700_000, 1_000_000, 512 * MB, files, data)

    assert memory is not None
    assert (memory.anonymous_bytes, memory.mapped_bytes) == (1200 * MB, mapped)
    assert memory.needed_bytes == int((1200 * MB + mapped) * FACTOR * 0.7)
    assert not memory.fits  # more than 2.8 GB + 512 MB > 3 GB
    assert memory.describe() == (
        f"it needs about {memory.needed_bytes / GB:.1f} GB (the process's 1.2 GB anonymous + "
        f"2.8 GB mapped from the index's snapshot, x 700,000 live / 1,000,000 numbered "
        f"documents x {FACTOR:g}) and 512 MB headroom, 3.0 GB available (MemAvailable in "
        f"{files.meminfo})"
    )
    in_memory_only = compaction_memory(700_000, 1_000_000, 512 * MB, files, None)
    assert in_memory_only is not None and in_memory_only.mapped_bytes == 0


def smaps_resident(directory: Path) -> int:
    """Bytes of this process's maps of files in `directory` that are resident (Rss)."""
    total, ours = 0, False
    with open("/proc/self/smaps") as f:
        for line in f:
            head = line.split(maxsplit=5)
            if "-" in head[0] and len(head) >= 5 and not head[0].endswith(":"):
                ours = len(head) == 6 and head[5].startswith(f"{directory}/")
            elif ours and line.startswith("Rss:"):
                total += int(line.split()[1]) * 1024
    return total


def restarted_index(path: Path, count: int, dim: int, **kwargs: object) -> DurableIndex:
    """An index of `count` documents with `dim`-dimensional vectors, snapshotted, closed and
    opened again from that snapshot: its vector rows (whole chunks) and document columns are
    maps of the file that nothing has read yet."""
    params = EngineParams(vector_dim=dim, ann=AnnParams(threshold=10**9))
    index = DurableIndex.open(path, params, snapshot_every=10**9, snapshot_interval_s=3600)
    for i in range(count):
        index.put(doc(f"img{i}", (("tiger cat", 0.9),), vector=unit(i, dim)))
    index.close()
    return DurableIndex.open(path, params, snapshot_every=10**9, snapshot_interval_s=3600, **kwargs)


def test_a_restarted_index_counts_the_rows_it_maps_though_none_is_resident(tmp_path, monkeypatch):
    monkeypatch.setattr(vector_index, "CHUNK_ROWS", 8)  # whole chunks are mapped
    index = restarted_index(tmp_path / "data", 256, 4096)
    vectors = index._index.vectors
    rows = [c for c in vectors._vectors.chunks + vectors._factors.chunks if mapping_of(c)]
    rows_bytes = sum(c.nbytes for c in rows)
    assert rows_bytes >= 256 * 4096  # 1 MB of int8 rows, mapped, ...
    assert smaps_resident(tmp_path / "data") < rows_bytes // 2  # ... and not paged in
    files = proc_files(tmp_path, anon_bytes=100 * MB)

    memory = compaction_memory(200, 256, 0, files, tmp_path / "data")

    assert memory is not None
    snapshot_bytes = (tmp_path / "data" / SNAPSHOT_NAME).stat().st_size
    assert rows_bytes <= memory.mapped_bytes <= snapshot_bytes + 2 * MB
    assert memory.mapped_bytes == mapped_bytes(tmp_path / "data")
    assert memory.needed_bytes == int((100 * MB + memory.mapped_bytes) * FACTOR * 200 / 256)
    index.close()


def test_a_compaction_its_snapshots_mapped_rows_would_not_fit_is_postponed(tmp_path, monkeypatch):
    """Right after a restart the index's vector rows are mapped and not yet read: the fresh
    index will hold them all in anonymous memory, so they count though not resident."""
    monkeypatch.setattr(vector_index, "CHUNK_ROWS", 8)
    files = proc_files(tmp_path, anon_bytes=1 * MB)
    index = restarted_index(
        tmp_path / "data", 3000, 1024, compaction_memory_headroom_bytes=0, memory_files=files
    )
    mapped = mapped_bytes(tmp_path / "data")
    assert mapped >= 3000 * 1024
    # Room for the anonymous part's share, and for half the mapped part's.
    room = int((1 * MB + mapped // 2) * FACTOR * 2 / 3)
    files.meminfo.write_text(MEMINFO.format(available_kib=room // 1024))

    for i in range(1000):
        index.remove(f"img{i}")
    assert index.wait_for_compaction(WAIT_S)

    assert (index.compactions, index.compactions_postponed) == (0, 1)
    assert index._index.numbered == 3000 and len(index) == 2000
    assert (
        f"(the process's 1 MB anonymous + {mapped / MB:.0f} MB mapped from the index's snapshot,"
        f" x 2,000 live / 3,000 numbered documents x {FACTOR:g})"
    ) in index.last_compaction_postponed
    index.close()


# ---- the index -----------------------------------------------------------------------------


def make_compaction_due(index: DurableIndex, reference: SearchIndex) -> None:
    """FIRST images put, then 1000 of them removed: compaction is due at the last removal
    (1000 live of 2000 numbered)."""
    for i in range(FIRST):
        index.put(image(i))
        reference.put(image(i))
    for i in range(1000):
        index.remove(f"img{i}")
        reference.remove(f"img{i}")
    assert index.wait_for_compaction(WAIT_S)


def hits(searched: DurableIndex | SearchIndex, query: str) -> list[tuple[str, float]]:
    return [(h.image_id, h.score) for h in searched.search(query, limit=5000).hits]


def postponements(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno == logging.WARNING and "compaction postponed" in r.getMessage()
    ]


def test_a_compaction_that_does_not_fit_is_postponed_and_the_index_serves_on(caplog):
    # The real /proc and cgroup files, and a headroom no machine has.
    index = DurableIndex(None, PARAMS, compaction_memory_headroom_bytes=2**50)
    reference = SearchIndex(PARAMS)
    caplog.set_level(logging.WARNING)

    make_compaction_due(index, reference)

    uncompacted = index._index
    assert (index.compactions, index.compaction_failures, index.compactions_postponed) == (0, 0, 1)
    assert uncompacted.numbered == FIRST and len(index) == 1000  # no rebuild swapped in
    assert uncompacted.needs_compaction()
    for query in QUERIES:
        assert hits(index, query) == hits(reference, query), query
    stats = index.stats()
    assert (stats.compactions_postponed, stats.compaction_failures) == (1, 0)
    assert stats.last_compaction_error == ""
    said = stats.last_compaction_postponed
    assert said.startswith("compaction postponed at ")
    assert "x 1,000 live / 2,000 numbered documents" in said
    assert "1048576.0 GB headroom" in said
    assert "MemAvailable in /proc/meminfo" in said or "cgroup /" in said
    assert "next try no sooner than " in said and "(in 30 s)" in said
    assert postponements(caplog) == [f"background {said}; the index keeps serving uncompacted"]


def test_a_postponed_compaction_is_retried_after_a_backoff_and_runs_once_it_fits(tmp_path, caplog):
    # 1 GB anonymous (no data dir: nothing mapped): a compaction of 1000 of 2000 documents
    # needs 512 MB x the factor, and 512 MB headroom.
    files = proc_files(tmp_path, available_bytes=800 * MB, anon_bytes=1 * GB)
    index = DurableIndex(
        None,
        PARAMS,
        compaction_backoff_s=10.0,
        compaction_memory_headroom_bytes=512 * MB,
        memory_files=files,
    )
    now = [1000.0]
    index._clock = lambda: now[0]
    reference = SearchIndex(PARAMS)
    caplog.set_level(logging.WARNING)
    version = 0

    def write() -> None:
        """A re-put (compaction stays due), then wait for any compaction it started."""
        nonlocal version
        version += 1
        document = image(1000 + version % 500, version)
        index.put(document)
        reference.put(document)
        assert index.wait_for_compaction(WAIT_S)

    make_compaction_due(index, reference)
    assert index.compactions_postponed == 1
    assert (
        f": it needs about {int(GB * FACTOR / 2) // MB} MB (the process's 1.0 GB anonymous + "
        f"0 MB mapped from the index's snapshot, x 1,000 live / 2,000 numbered documents x "
        f"{FACTOR:g}) and 512 MB headroom, 800 MB available (MemAvailable in {files.meminfo}); "
        "next try no sooner than "
    ) in index.last_compaction_postponed
    assert index.last_compaction_postponed.endswith("(in 10 s)")

    # Within the backoff, writes that find compaction due neither start nor postpone one.
    for _ in range(20):
        write()
    now[0] += 9.9
    write()
    assert (index.compactions_postponed, index.compactions) == (1, 0)
    assert len(postponements(caplog)) == 1

    # After it, the next write tries again: still too little, the wait doubles.
    now[0] += 0.1
    write()
    assert (index.compactions_postponed, index.compactions) == (2, 0)
    assert index.last_compaction_postponed.endswith("(in 20 s)")
    assert len(postponements(caplog)) == 2

    # Memory freed meanwhile (2 GB available): after the backoff it compacts as before.
    files.meminfo.write_text(MEMINFO.format(available_kib=2 * GB // 1024))
    now[0] += 20.0
    write()
    assert (index.compactions, index.compactions_postponed, index.compaction_failures) == (
        1,
        2,
        0,
    )
    assert index._index.numbered == len(index) == len(reference)
    assert not index._index.needs_compaction()
    for query in QUERIES:
        assert [h for h, _ in hits(index, query)] == [h for h, _ in hits(reference, query)]
    assert len(postponements(caplog)) == 2


def test_a_cgroup_limit_postpones_a_compaction_the_machine_would_fit(tmp_path):
    files = proc_files(
        tmp_path, available_bytes=16 * GB, anon_bytes=1 * GB, cgroup="0::/docker/abc123\n"
    )
    limit_cgroup(files, "docker/abc123", str(2 * GB), 1200 * MB)
    index = DurableIndex(None, PARAMS, memory_files=files)  # the default headroom, 512 MB

    make_compaction_due(index, SearchIndex(PARAMS))

    assert (index.compactions, index.compactions_postponed) == (0, 1)
    assert (
        f"it needs about {int(GB * FACTOR / 2) // MB} MB (the process's 1.0 GB anonymous + 0 MB "
        f"mapped from the index's snapshot, x 1,000 live / 2,000 numbered documents x "
        f"{FACTOR:g}) and 512 MB headroom, 848 MB available (cgroup /docker/abc123: memory.max "
        "2.0 GB - 1.2 GB in use)"
    ) in index.last_compaction_postponed


def test_with_room_or_with_the_check_off_it_compacts_as_before(tmp_path):
    (tmp_path / "roomy").mkdir()
    roomy = DurableIndex(
        None,
        PARAMS,
        memory_files=proc_files(tmp_path / "roomy", available_bytes=2 * GB, anon_bytes=GB),
    )
    unchecked = DurableIndex(
        None,
        PARAMS,
        compaction_memory_headroom_bytes=None,
        memory_files=proc_files(tmp_path, available_bytes=0),
    )

    for index in (roomy, unchecked):
        make_compaction_due(index, SearchIndex(PARAMS))

        assert (index.compactions, index.compactions_postponed) == (1, 0)
        assert index._index.numbered == len(index) == 1000
        assert index.last_compaction_postponed == ""


def test_get_stats_reports_a_postponed_compaction(tmp_path):
    """An operator sees through GetStats (v1 and v2) that compaction is postponed, and why: a
    real server on a free port, the index's own compaction thread."""
    files = proc_files(tmp_path, available_bytes=800 * MB, anon_bytes=1 * GB)
    index = DurableIndex(None, PARAMS, memory_files=files)
    server, stub1, channel = serve(index)
    stub2 = v2_grpc.SearchServiceStub(channel)
    try:
        before = stub1.GetStats(v1.GetStatsRequest(), timeout=10)
        make_compaction_due(index, SearchIndex(PARAMS))
        got = [
            stub1.GetStats(v1.GetStatsRequest(), timeout=10),
            stub2.GetStats(v2.GetStatsRequest(), timeout=10),
        ]
    finally:
        channel.close()
        server.stop(grace=None)

    assert (before.compactions_postponed, before.last_compaction_postponed) == (0, "")
    for stats in got:
        assert (stats.compactions_postponed, stats.compactions, stats.compaction_failures) == (
            1,
            0,
            0,
        )
        assert stats.last_compaction_postponed == index.last_compaction_postponed
        assert "512 MB headroom, 800 MB available (MemAvailable in " in (
            stats.last_compaction_postponed
        )
        assert stats.document_count == 1000  # still serving, uncompacted


def test_config_reads_the_memory_headroom_and_can_turn_the_check_off():
    assert SearchConfig.from_env({}).compaction_memory_headroom_bytes() == 512 * MB
    assert (
        SearchConfig.from_env({}).compaction_memory_headroom_bytes()
        == memory_guard.DEFAULT_COMPACTION_MEMORY_HEADROOM_BYTES
    )
    headroom = {"SEARCH_COMPACTION_MEMORY_HEADROOM_MB": "2048"}
    assert SearchConfig.from_env(headroom).compaction_memory_headroom_bytes() == 2 * GB
    for off in ("0", "false", "off"):
        config = SearchConfig.from_env({"SEARCH_COMPACTION_MEMORY_CHECK": off})
        assert config.compaction_memory_headroom_bytes() is None
