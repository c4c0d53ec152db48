"""Opening a store builds its view from the segments' id columns as fixed-width bytes, grouped
and resolved with numpy (store._load_view), never a Python string or dict entry per row. These
tests build segments straight from rows with awkward histories and check that the opened store
answers exactly what applying every row in seq order gives: which images are live, which row
is each image's newest, the listings, the date-taken order and the change feed."""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from storage_service.columnstore.errors import ImageNotFoundError
from storage_service.columnstore.manifest import Manifest
from storage_service.columnstore.model import AnnotationUpdate, ChangeKind, ListOrder
from storage_service.columnstore.row import Row
from storage_service.columnstore.schema import RowKind
from storage_service.columnstore.segment_writer import write_segment
from storage_service.columnstore.store import ColumnStore
from storage_service.columnstore.taken_index import TakenIndex, date_taken_ms, sort_key

from .conftest import SMALL_MEMTABLE, listed_ids

JPEG = bytes.fromhex("ffd8ffe000104a46494600010100000100010000ffd9")


def _put_values(image_id: str, i: int, rng: random.Random) -> dict[str, Any]:
    created = 1_700_000_000_000 + i * 1000
    return {
        "id": image_id,
        "filename": f"IMG_{i:05d}.jpg",
        "owner": f"user{rng.randrange(4)}",
        "content_type": "image/jpeg",
        "format": "JPEG",
        "created_at_ms": created,
        "sha256": f"{i:064x}",
        "byte_size": len(JPEG),
        "width": 1,
        "height": 1,
        # Taken dates out of upload order, some the same second (ties broken by the id hash).
        "exif": {"taken_at": f"2020:01:{1 + rng.randrange(28):02d} 10:00:{rng.randrange(3):02d}"},
        "status": 1,
        "labels": [],
        "tags": [],
    }


def _history(n: int, seed: int) -> tuple[list[Row], dict[str, dict[str, Any]]]:
    """Rows in seq order with every kind of history, and the expected state per id after
    applying them one by one (a PUT makes an image live unless it is, an annotation replaces
    its annotation values while live, a tombstone ends it)."""
    rng = random.Random(seed)
    odd = ["photo-1", "ABCDEF0123456789ABCDEF0123456789", "short", "x" * 40, "00" * 15 + "zz"]
    ids = [f"{0x18C000000000 + i:012x}{i % 65536:04x}{rng.getrandbits(64):016x}" for i in range(n)]
    assert all(len(i) == 32 for i in ids)
    ids[5:10] = odd
    rows: list[Row] = []
    state: dict[str, dict[str, Any]] = {}
    seq = 1

    def add(kind: RowKind, values: dict[str, Any], lease_only: bool = False) -> None:
        nonlocal seq
        if lease_only:
            values = {**values, "lease_only": 1}
        blobs = {"data": JPEG} if kind is RowKind.PUT else {}
        rows.append(Row(seq, kind, values, blobs))
        image_id = values["id"]
        if kind is RowKind.PUT and image_id not in state:
            state[image_id] = {**values, "seq": seq}
        elif kind is RowKind.ANNOTATE and image_id in state:
            state[image_id] = {**state[image_id], **values}
        elif kind is RowKind.DELETE:
            state.pop(image_id, None)
        seq += 1

    for i, image_id in enumerate(ids):
        if i % 7 == 3:  # an annotation before its put: ignored
            add(RowKind.ANNOTATE, {"id": image_id, "status": 3, "tags": ["early"]})
        add(RowKind.PUT, _put_values(image_id, i, rng))
    for i, image_id in enumerate(ids):
        roll = rng.random()
        if roll < 0.15:
            add(RowKind.DELETE, {"id": image_id})
            if i % 3 == 0:  # put again after its delete: a new life under the same id
                add(RowKind.PUT, {**_put_values(image_id, i, rng), "filename": f"again{i}.jpg"})
            elif i % 3 == 1:  # annotated after the delete: ignored
                add(RowKind.ANNOTATE, {"id": image_id, "status": 2, "tags": ["late"]})
        elif roll < 0.45:
            add(RowKind.ANNOTATE, {"id": image_id, "status": 2, "tags": [f"t{i}"]})
            if rng.random() < 0.5:  # and again: the newest wins
                add(RowKind.ANNOTATE, {"id": image_id, "status": 2, "tags": [f"u{i}"]})
        elif roll < 0.55:  # a claim: a lease-only row (not in the feed, still the newest)
            add(RowKind.ANNOTATE, {"id": image_id, "status": 1, "tags": ["claimed"]}, True)
        elif roll < 0.60:  # a PUT of a live id again (a merged row's version): ignored
            add(RowKind.PUT, {**_put_values(image_id, i, rng), "filename": "ignored.jpg"})
        elif roll < 0.63:
            add(RowKind.ANNOTATE, {"id": image_id, "status": 1, "trashed_at_ms": 1})
    return rows, state


def _write_store(data_dir: Path, rows: list[Row], parts: int, seed: int) -> None:
    """The rows in `parts` segments, dealt out so that no segment is a seq range (as after
    compactions), named in a MANIFEST."""
    seg_dir = data_dir / "segments"
    seg_dir.mkdir(parents=True)
    (data_dir / "wal").mkdir()
    rng = random.Random(seed)
    groups: list[list[Row]] = [[] for _ in range(parts)]
    for row in rows:
        groups[rng.randrange(parts)].append(row)
    for k, group in enumerate(groups, start=1):
        write_segment(seg_dir / f"{k:06d}.seg", group, covers=[(1, rows[-1].seq)])
    Manifest(
        tuple(range(1, parts + 1)),
        parts + 1,
        1,
        {k: len(g) for k, g in enumerate(groups, start=1)},
    ).save(data_dir)


def _all_pages(store: ColumnStore, **kw: Any) -> list[str]:
    out, token = [], ""
    while True:
        page = store.list_images(37, token, **kw)
        out += [m.id for m in page.images]
        token = page.next_page_token
        if not token:
            return out


@pytest.mark.parametrize("parts", [1, 4])
def test_open_gives_the_state_of_every_row_applied_in_seq_order(tmp_path, parts):
    rows, state = _history(1500, seed=parts)
    _write_store(tmp_path / "s", rows, parts, seed=parts)
    store = ColumnStore.open(tmp_path / "s", SMALL_MEMTABLE)
    try:
        live = {i: v for i, v in state.items() if not v.get("trashed_at_ms")}
        assert store.stats().image_count == len(state)
        for image_id, want in state.items():
            meta = store.get(image_id)
            assert meta.filename == want["filename"]
            assert list(meta.tags) == want["tags"], image_id
            assert int(meta.status) == want["status"]
        for row in rows:
            if row.image_id not in state:
                with pytest.raises(ImageNotFoundError):
                    store.get(row.image_id)
        # Newest upload first: by id, the trash apart.
        assert _all_pages(store) == sorted(live, reverse=True)
        assert _all_pages(store, trashed_only=True) == sorted(
            (i for i, v in state.items() if v.get("trashed_at_ms")), reverse=True
        )
        assert _all_pages(store, owner="user2") == sorted(
            (i for i, v in live.items() if v["owner"] == "user2"), reverse=True
        )

        # Date taken: the same total order (taken ms, then the id's hash) as before.
        def taken_key(image_id: str) -> int:
            values = live[image_id]
            return sort_key(date_taken_ms(values["exif"], values["created_at_ms"])[0], image_id)

        by_taken = sorted(live, key=taken_key, reverse=True)
        assert _all_pages(store, order=ListOrder.TAKEN_NEWEST) == by_taken
        assert _all_pages(store, owner="user1", order=ListOrder.TAKEN_OLDEST) == [
            i for i in by_taken[::-1] if live[i]["owner"] == "user1"
        ]
        # The feed: every row but the claims, in seq order, under its own id.
        want_feed = [
            (r.seq, int(r.kind), r.image_id) for r in rows if not r.values.get("lease_only")
        ]
        got = store.changes(0, limit=100_000).changes
        assert [(c.seq, int(c.kind), c.image_id) for c in got] == want_feed
        assert {c.kind for c in got} == {ChangeKind.PUT, ChangeKind.ANNOTATE, ChangeKind.DELETE}
        for image_id, want in state.items():
            assert [m.id for m in store.find_by_filename(want["filename"])] == [image_id]
    finally:
        store.close()


def test_puts_deletes_and_reopen_after_a_streaming_open_agree(tmp_path):
    rows, state = _history(600, seed=9)
    _write_store(tmp_path / "s", rows, 3, seed=9)
    store = ColumnStore.open(tmp_path / "s", SMALL_MEMTABLE)
    gone = sorted(state)[:40]
    for image_id in gone:
        store.delete(image_id)
        del state[image_id]
    store.close()
    again = ColumnStore.open(tmp_path / "s", SMALL_MEMTABLE)
    try:
        assert store is not again
        assert again.stats().image_count == len(state)
        assert sorted(m.id for m in again.get_many(sorted(state)) if m is not None) == sorted(state)
        assert again.get_many(gone) == [None] * len(gone)
        feed = again.changes(0, limit=100_000).changes
        assert [c.image_id for c in feed[-40:]] == gone
    finally:
        again.close()


def test_date_taken_order_holds_through_churn_that_reuses_slots(tmp_path, small_images):
    """The date-taken indexes keep slots only and read each entry's key through its slot, so
    a deleted image's stale entries must be detached from its slot before a put reuses the
    slot with another key: deletes, trash, restores and puts (reusing freed slots at once)
    never disorder a listing, for every image or one owner, in either order, across pages
    and a reopen."""
    rng = random.Random(4)
    store = ColumnStore.open(tmp_path / "s", SMALL_MEMTABLE)
    model: dict[str, tuple[int, str, bool]] = {}  # id -> (key, owner, trashed)

    def put() -> None:
        image = small_images[rng.randrange(len(small_images))]
        taken = f"20{rng.randrange(10, 24)}:0{rng.randrange(1, 10)}:1{rng.randrange(10)} 08:00:00"
        image = dataclasses.replace(image, exif={**image.exif, "taken_at": taken})
        owner = f"o{rng.randrange(3)}"
        meta = store.put(f"{len(model)}.jpg", owner, image).image
        model[meta.id] = (sort_key(meta.taken_at_ms, meta.id), owner, False)

    def check(s: ColumnStore) -> None:
        shown = {i: v for i, v in model.items() if not v[2]}
        newest = sorted(shown, key=lambda i: shown[i][0], reverse=True)
        assert listed_ids(s, 7, order=ListOrder.TAKEN_NEWEST) == newest
        assert listed_ids(s, 5, order=ListOrder.TAKEN_OLDEST) == newest[::-1]
        for owner in ("o0", "o2"):
            mine = [i for i in newest if shown[i][1] == owner]
            assert listed_ids(s, 4, owner=owner, order=ListOrder.TAKEN_NEWEST) == mine
            assert s.list_images(1, owner=owner, order=ListOrder.TAKEN_NEWEST).total_count == len(
                mine
            )

    try:
        for _ in range(60):
            put()
        slots = len(store._slot_ids)
        for step in range(240):
            roll = rng.random()
            ids = sorted(model)
            if roll < 0.35 and ids:
                victim = rng.choice(ids)
                store.delete(victim)
                del model[victim]
            elif roll < 0.5 and ids:
                image_id = rng.choice(ids)
                key, owner, trashed = model[image_id]
                store.update_annotations(
                    image_id, AnnotationUpdate(fields=frozenset({"trashed"}), trashed=not trashed)
                )
                model[image_id] = (key, owner, not trashed)
            else:
                put()
            if step % 40 == 39:
                check(store)
        # Freed slots were reused at once: slots only for images beyond the most there were.
        assert len(store._slot_ids) <= max(slots, len(model) + len(store._free_slots))
        assert len(store._slot_ids) - len(store._free_slots) == len(model)
        check(store)
        store.close()
        store = ColumnStore.open(tmp_path / "s", SMALL_MEMTABLE)
        check(store)
        # Each image's key is kept once (per slot); the indexes hold 8 bytes an entry.
        shown = sum(1 for v in model.values() if not v[2])
        assert store._taken_all.nbytes == 8 * shown
        assert sum(t.nbytes for t in store._taken_by_owner.values()) == 8 * shown
    finally:
        store.close()


def test_detach_keeps_the_order_when_a_slot_gets_another_key():
    """Hand-made keys, ties included: a detached slot's entries are skipped and every other
    entry is still found in order after the slot takes a key elsewhere in the order."""
    keys = np.array([50, 10, 30, 30, 70, 30, 90], dtype=np.uint64)
    epochs = np.zeros(16, dtype=np.uint32)
    index = TakenIndex(lambda: keys)
    index.bulk_load(keys.copy(), np.arange(7), np.zeros(7, dtype=np.uint32))

    def current(slots: np.ndarray, entry_epochs: np.ndarray) -> np.ndarray:
        return epochs[slots] == entry_epochs

    def listed() -> list[int]:
        return [
            s
            for _k, s in index.page(
                10, descending=False, lo=0, hi=1 << 64, after=None, accept=current
            )
        ]

    assert listed() == [1, 2, 3, 5, 0, 4, 6]
    # Slot 3 (a tie at 30) and slot 1 (the lowest key) deleted, then reused with new keys.
    for slot, new_key in ((3, 95), (1, 60)):
        epochs[slot] += 1
        index.removed()
        index.detach(slot)
        keys[slot] = new_key
        index.add(new_key, slot, int(epochs[slot]))
    assert listed() == [2, 5, 0, 1, 4, 6, 3]
    assert index.count(0, 1 << 64, current) == 7 == len(index)
    assert [
        s
        for _k, s in index.page(2, descending=True, lo=0, hi=1 << 64, after=(60, 1), accept=current)
    ] == [0, 5]
    index.compact(current, force=True)
    assert listed() == [2, 5, 0, 1, 4, 6, 3] and index.nbytes == 8 * 7
    # An index holding one slot's entries only is emptied by its detach.
    lone = TakenIndex(lambda: keys)
    lone.bulk_load(keys[[2]].copy(), np.array([2]), np.zeros(1, dtype=np.uint32))
    epochs[2] += 1
    lone.removed()
    lone.detach(2)
    assert len(lone) == 0 and lone.nbytes == 0
