"""A damaged row in the change feed's way: real bytes of a real segment (or log) damaged on
disk. The feed delivers the change marked damaged, in its place, and goes on with the page
and everything after it; the damage is logged once and counted (stats, GetStats, /metrics).
Before this, the whole page answered DATA_LOSS and every consumer stalled at that seq."""

from __future__ import annotations

import logging
import shutil
import time
from pathlib import Path

import grpc
import pytest
from prometheus_client import REGISTRY

from imagerepo.storage.v1 import storage_service_pb2 as pb1
from imagerepo.storage.v1 import storage_service_pb2_grpc as pb1_grpc
from imagerepo.storage.v2 import storage_service_pb2 as pb2
from imagerepo.storage.v2 import storage_service_pb2_grpc as pb2_grpc
from service_runtime.grpc_server import channel_options
from storage_service.columnstore import wal
from storage_service.columnstore.errors import DataLossError
from storage_service.columnstore.model import AnnotationUpdate, ChangeKind, ThumbState
from storage_service.columnstore.store import ColumnStore, StoreOptions
from storage_service.server import build_server
from tests.storage_service.conftest import damage_row_meta, put

OPTS = StoreOptions(memtable_bytes=1 << 30, compact_min_segments=1000, compact_dead_fraction=2.0)


def _store_with_damage(
    tmp_path: Path, small_images, data_dir: Path | None = None
) -> tuple[Path, list[str], str, str]:
    """Six images (the third tagged later) flushed to a segment, then the third's metadata
    row damaged on disk: (data dir, ids, victim, segment name). In `data_dir` when given,
    else tmp_path / "s"."""
    data_dir = data_dir or tmp_path / "s"
    store = ColumnStore.open(data_dir, OPTS)
    ids = [store.put(f"{i}.jpg", "ann", im).image.id for i, im in enumerate(small_images[:6])]
    store.update_annotations(ids[2], AnnotationUpdate(add_tags=("x",)))
    store.flush()
    store.close()
    victim = ids[2]
    segment = damage_row_meta(data_dir, victim)
    return data_dir, ids, victim, segment


def test_a_damaged_metadata_row_is_delivered_marked_and_the_feed_goes_on(
    tmp_path, small_images, caplog
):
    data_dir, ids, victim, segment = _store_with_damage(tmp_path, small_images)
    store = ColumnStore.open(data_dir, OPTS)
    with pytest.raises(DataLossError):
        store.get(victim)  # the damage is real: the image's own reads answer data loss

    with caplog.at_level(logging.ERROR, "storage_service.columnstore.store"):
        page = store.changes(0, 1000)
    # Every change is there, in order: the victim's put and its annotate marked damaged (its
    # current metadata cannot be built), every other one with its metadata.
    assert [(c.kind, c.image_id) for c in page.changes] == [
        *[(ChangeKind.PUT, i) for i in ids],
        (ChangeKind.ANNOTATE, victim),
    ]
    damaged = [c for c in page.changes if c.damage]
    assert [c.image_id for c in damaged] == [victim, victim]
    assert all(c.image is None and segment in c.damage for c in damaged)
    assert all(
        c.image is not None and c.image.id == c.image_id for c in page.changes if not c.damage
    )
    logged = [r for r in caplog.records if "delivered marked damaged" in r.getMessage()]
    assert [r.seq for r in logged] == [c.seq for c in damaged]  # type: ignore[attr-defined]

    # In small pages, a page that reaches the damaged row still answers and the walk ends at
    # the head; walking again neither logs nor counts the same damage twice.
    walked, after = [], 0
    while chunk := store.changes(after, 2).changes:
        walked += [(c.seq, c.damage != "") for c in chunk]
        after = chunk[-1].seq
    assert walked == [(c.seq, c.damage != "") for c in page.changes]
    assert after == store.head_seq
    assert store.stats().feed_damaged_changes == 2
    assert store.feed_damage() == {c.seq: c.damage for c in damaged}

    # Later changes flow as usual.
    later = store.put("later.jpg", "ann", small_images[6]).image.id
    (last,) = store.changes(after, 10).changes
    assert last.image_id == later and last.image is not None and not last.damage
    store.close()


def test_a_damaged_log_record_leaves_a_gap_the_feed_goes_past(tmp_path, small_images):
    store = ColumnStore.open(tmp_path / "s", OPTS)
    ids = [store.put(f"{i}.jpg", "", im).image.id for i, im in enumerate(small_images[:4])]
    crashed = tmp_path / "crashed"  # a kill -9: the rows only in the log
    shutil.copytree(store.data_dir, crashed)
    store.close()
    (crashed / "LOCK").unlink()
    (path,) = [p for p in (crashed / "wal").glob("*.log") if wal.read_log(p)[0]]
    header = wal.record_offsets(path)[1]  # the second record's first fragment
    raw = bytearray(path.read_bytes())
    raw[header + 200] ^= 0x10
    path.write_bytes(bytes(raw))

    reopened = ColumnStore.open(crashed, OPTS)
    assert reopened.stats().damaged_log_records == 1
    page = reopened.changes(0, 1000)
    assert [c.image_id for c in page.changes] == [ids[0], ids[2], ids[3]]
    assert all(c.image is not None for c in page.changes)
    later = reopened.put("later.jpg", "", small_images[5]).image.id
    assert reopened.changes(page.changes[-1].seq, 10).changes[0].image_id == later
    reopened.close()


def _gauge(name: str) -> float | None:
    return REGISTRY.get_sample_value(name)


def test_watch_changes_over_grpc_marks_the_damaged_change_and_counts_it(tmp_path, small_images):
    data_dir, ids, victim, segment = _store_with_damage(tmp_path, small_images)
    store = ColumnStore.open(data_dir, OPTS)
    server, port, health = build_server(store, "127.0.0.1:0")
    server.start()
    health.set_serving(True)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=channel_options())
    try:
        v2 = pb2_grpc.StorageServiceStub(channel)
        replies = list(
            v2.WatchChanges(pb2.WatchChangesRequest(after_seq=0, follow=False), timeout=10)
        )
        changes = [c for r in replies for c in r.changes]
        assert [c.image_id for c in changes] == [*ids, victim]
        marked = [c for c in changes if c.HasField("damage")]
        assert [c.image_id for c in marked] == [victim, victim]
        assert all(segment in c.damage.reason and not c.HasField("image") for c in marked)
        assert all(c.HasField("image") for c in changes if not c.HasField("damage"))
        assert replies[-1].head_seq == changes[-1].seq
        stats = v2.GetStats(pb2.GetStatsRequest(), timeout=10)
        assert stats.feed_damaged_changes == 2
        assert _gauge("storage_feed_damaged_changes") == 2

        # v1 cannot say "damaged": its clients get the change without an image (as for an
        # image deleted since), and the stream goes on too.
        v1 = pb1_grpc.StorageServiceStub(channel)
        old = [
            c
            for r in v1.WatchChanges(pb1.WatchChangesRequest(follow=False), timeout=10)
            for c in r.changes
        ]
        assert [c.image_id for c in old] == [*ids, victim]
        assert [c.image_id for c in old if not c.HasField("image")] == [victim, victim]
    finally:
        channel.close()
        server.stop(grace=None)
        store.close()


def test_the_thumbnailer_reads_past_a_damaged_row(tmp_path, small_images, storage_runner):
    # The thumbnailer follows the same feed from its checkpoint: without one it reads from the
    # start, through the damaged row, and still makes the thumbnails of a later put.
    data_dir, _ids, victim, _segment = _store_with_damage(
        tmp_path, small_images, storage_runner.data_dir
    )
    (data_dir / "thumbnailer.json").unlink(missing_ok=True)
    service = storage_runner.start()
    # Over gRPC, a put's thumbnails are made after the ack, by the thumbnailer.
    later = put(service.stub, small_images[7].data, "l.jpg").image.id
    deadline = time.monotonic() + 20
    while service.store.get(later).thumb_state is not ThumbState.MADE:
        assert time.monotonic() < deadline, "the thumbnailer is stuck behind the damage"
        time.sleep(0.05)
    assert service.store.feed_damaged_count >= 1
