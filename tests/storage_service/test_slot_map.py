"""The id -> slot map (slot_map.py, over the fixed-width ids of id_array.py) on its own, and
the store reusing deleted images' slots: collisions, odd ids, growth, removal, bulk load, reuse
then reopen, and a kill -9 in the middle of churn."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np

from storage_service.columnstore.id_array import IdArray
from storage_service.columnstore.image_check import prepare_image
from storage_service.columnstore.model import (
    AnnotationUpdate,
    ChangeKind,
    ListOrder,
    PreparedImage,
)
from storage_service.columnstore.slot_map import SlotMap
from storage_service.columnstore.store import ColumnStore
from tests.conftest import REPO_ROOT
from tests.storage_service.conftest import SMALL_MEMTABLE, listed_ids, put_images, take_slot


def _colliding_ids(count: int, mask: int = 1023) -> list[str]:
    """Real 32-hex ids (as the store makes them) whose hashes share their low bits: every one
    lands in the same probe run of a table of mask + 1 entries."""
    rng = np.random.default_rng(11)
    found: list[str] = []
    while len(found) < count:
        raw = rng.integers(0, 256, size=(200_000, 16), dtype=np.uint8)
        pool = IdArray()
        pool.assign([row.tobytes().hex() for row in raw])
        hashes = pool.hashes(np.arange(len(pool)))
        found += [pool[i] for i in np.flatnonzero((hashes & np.uint64(mask)) == 7).tolist()]
    return found[:count]


def _check(m: SlotMap, model: dict[str, int], absent: list[str]) -> None:
    assert len(m) == len(model)
    for key, slot in model.items():
        assert m.get(key) == slot
        assert m[key] == slot
        assert key in m
    for key in absent:
        assert m.get(key) is None
        assert key not in m


def test_every_key_colliding_is_still_found_and_removed(tmp_path):
    colliding = _colliding_ids(301)
    ids = IdArray()
    m = SlotMap(ids)
    assert len({ids.key(k)[0] & (m.capacity - 1) for k in colliding}) == 1
    model: dict[str, int] = {}
    for i in range(300):
        ids.append(colliding[i])
        m.add(colliding[i], i)
        model[colliding[i]] = i
    assert m.capacity == 1024  # still one probe run of 300
    _check(m, model, [colliding[300], "id1x", colliding[0].upper()])
    # Remove from the front, the middle and the end of the single probe run.
    for i in [0, 150, 299, *range(1, 100, 3)]:
        assert m.remove(colliding[i]) == i
        del model[colliding[i]]
        ids[i] = ""
        _check(m, model, [colliding[i]])
    assert m.remove(colliding[300]) is None


# Ids the store never makes but must still tell apart: shorter, longer, upper case, spaces,
# non-ASCII, empty-looking, and a 33-digit id (a counter past four hex digits).
ODD_IDS = [
    "id1",
    "x",
    "0" * 31,
    "0" * 33,
    "f" * 34,
    "A" * 32,
    "ab " * 10 + "ab",
    "ünïcödé-ïd",
    "0196f0a1b2c3" + "10000" + "a" * 16,
    "../etc/passwd",
]


def test_random_adds_and_removes_agree_with_a_dict_through_growth_and_bulk_load():
    rng = random.Random(3)
    ids = IdArray()
    free: list[int] = []
    m = SlotMap(ids)
    model: dict[str, int] = {}
    removed: list[str] = []
    capacities = set()
    for step in range(30_000):
        if model and rng.random() < 0.35:
            key = rng.choice(list(model)) if step % 64 == 0 else next(iter(model))
            slot = model.pop(key)
            assert m.remove(key) == slot
            ids[slot] = ""
            free.append(slot)
            removed.append(key)
        else:
            if step % 997 == 0:
                key = f"{rng.choice(ODD_IDS)}-{step}"
            else:
                key = f"{rng.getrandbits(128):032x}"
            slot = take_slot(ids, free, key)
            m.add(key, slot)
            model[key] = slot
        capacities.add(m.capacity)
        assert 2 * len(m) <= m.capacity
    assert len(capacities) > 3  # it grew several times
    assert 0 < ids.odd_count - len(free) < 40
    _check(m, model, removed[-500:])
    # Rebuilt at once from the live slots: the same answers.
    live = np.array(sorted(model.values()), dtype=np.int64)
    again = SlotMap(ids)
    again.bulk_load(live)
    _check(again, model, removed[-500:])
    assert again.nbytes == 4 * again.capacity


def test_bulk_load_with_colliding_and_odd_keys():
    keys = _colliding_ids(200) + [f"plain{i}" for i in range(2000)] + ODD_IDS
    ids = IdArray()
    ids.assign(keys)
    m = SlotMap(ids)
    m.bulk_load(np.arange(len(ids)))
    _check(m, {k: i for i, k in enumerate(keys)}, ["c-1", keys[0].upper(), "", " " + keys[1]])


def test_deleted_slots_are_reused_by_later_puts_and_reopen_agrees(tmp_path, small_images):
    store = ColumnStore.open(tmp_path / "s", SMALL_MEMTABLE)
    ids = put_images(store, small_images[:10], ("ann",))
    store.update_annotations(
        ids[2], AnnotationUpdate(fields=frozenset({"favourite"}), favourite=True)
    )
    slots_before = len(store._slot_ids)
    for image_id in ids[:6]:
        store.delete(image_id)
    # The same names again (so the filename index holds the reused slots under the same key).
    again = put_images(store, small_images[:6], ("ann",))
    assert len(store._slot_ids) == slots_before  # no new slot: the six freed ones were reused
    live = ids[6:] + again
    assert listed_ids(store, 7) == sorted(live, reverse=True)
    assert listed_ids(store, 7, owner="ann") == sorted(live, reverse=True)
    # A deleted image's date-taken entries do not come back through its reused slot.
    by_taken = listed_ids(store, 7, order=ListOrder.TAKEN_NEWEST)
    assert sorted(by_taken) == sorted(live) and len(by_taken) == len(live)
    assert store.list_images(favourite_only=True).images == ()
    for i, image_id in enumerate(again):
        assert [m.id for m in store.find_by_filename(f"{i}.jpg")] == [image_id]
        assert store.get(image_id).filename == f"{i}.jpg"
    for image_id in ids[:6]:
        assert store.get_many([image_id]) == [None]
    feed = store.changes(0, limit=1000).changes
    kinds = [(c.kind, c.image_id) for c in feed]
    assert kinds.count((ChangeKind.DELETE, ids[0])) == 1
    assert [i for k, i in kinds if k is ChangeKind.PUT][-6:] == again
    # Each change carries its own image's metadata (never the image now in its old slot).
    for change in feed:
        if change.image_id in ids[:6]:
            assert change.image is None
        elif change.kind is not ChangeKind.DELETE:
            assert change.image is not None and change.image.id == change.image_id
    store.close()

    reopened = ColumnStore.open(tmp_path / "s", SMALL_MEMTABLE)
    assert len(reopened._slot_ids) == len(live)  # only live images have a slot after open
    assert listed_ids(reopened, 7) == sorted(live, reverse=True)
    for i, image_id in enumerate(again):
        assert [m.id for m in reopened.find_by_filename(f"{i}.jpg")] == [image_id]
    assert [(c.kind, c.image_id) for c in reopened.changes(0, limit=1000).changes] == kinds
    reopened.close()


def test_churn_does_not_grow_the_view(tmp_path, small_images):
    # A long-running store where images come and go: slots, the id map and the filename and
    # sha256 indexes stay the size of what is live (before, every image ever put kept a slot).
    store = ColumnStore.open(tmp_path / "s", SMALL_MEMTABLE)
    images = small_images[:8]
    live = put_images(store, images, ("ann",))
    for round_ in range(6):
        # Half of them go and come back (the same photos and names: new images).
        for image_id in live[round_ % 2 :: 2]:
            store.delete(image_id)
        live[round_ % 2 :: 2] = [
            store.put(f"{i}.jpg", "ann", images[i]).image.id for i in range(round_ % 2, 8, 2)
        ]
        assert len(store._slot_ids) == 8, round_
        assert len(store._slot_of) == 8
        assert len(store._filename_hashes) == len(store._sha_hashes) == 8
    for i, im in enumerate(images):
        assert [m.id for m in store.find_by_sha256(im.sha256)] == [live[i]]
        assert [m.id for m in store.find_by_filename(f"{i}.jpg")] == [live[i]]
    assert store.stats().image_count == 8
    store.close()


_CHURN = textwrap.dedent(
    """
    import io, sys, random
    from PIL import Image
    from storage_service.columnstore.image_check import prepare_image
    from storage_service.columnstore.store import ColumnStore, StoreOptions

    images = []
    for i in range(6):
        buf = io.BytesIO()
        Image.new("RGB", (32, 32), (40 * i, 255 - 40 * i, 7 * i)).save(buf, "JPEG")
        images.append(prepare_image(buf.getvalue()))
    store = ColumnStore.open(sys.argv[1], StoreOptions(
        memtable_bytes=60_000, compact_min_segments=3, feed_retention_seqs=0))
    rng = random.Random(int(sys.argv[2]))
    live = []
    n = 0
    while True:
        if live and rng.random() < 0.45:
            image_id = live.pop(rng.randrange(len(live)))
            print("try", image_id, flush=True)
            store.delete(image_id)
            print("del", image_id, flush=True)
        else:
            image_id = store.put(f"f{n % 9}.jpg", "ann", images[n % 6]).image.id
            live.append(image_id)
            print("put", image_id, flush=True)
        n += 1
    """
)


def test_kill_9_in_the_middle_of_churn_keeps_every_acknowledged_write(tmp_path):
    data = tmp_path / "s"
    acked: dict[str, bool] = {}
    for round_ in range(3):
        proc = subprocess.Popen(
            [sys.executable, "-c", _CHURN, str(data), str(round_)],
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=dict(os.environ, PYTHONPATH=str(REPO_ROOT)),
        )
        deadline = time.monotonic() + 60
        lines: list[str] = []
        assert proc.stdout is not None
        while len(lines) < 250 and time.monotonic() < deadline:
            line = proc.stdout.readline().decode()
            if not line:
                break
            lines.append(line)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
        lines += proc.stdout.read().decode().splitlines()
        assert len(lines) >= 250, "the churn process stopped early"
        trying = ""
        for line in lines:
            what, image_id = line.split()
            if what == "try":
                trying = image_id
            else:
                acked[image_id] = what == "put"
                trying = ""
        store = ColumnStore.open(data, SMALL_MEMTABLE)
        try:
            listed = listed_ids(store, 7)
            # The write the kill cut short may or may not have happened, nothing else.
            if trying and trying not in listed:
                acked[trying] = False
            unacked = set(listed) - set(acked)
            assert len(unacked) <= 1 and all(i > max(acked) for i in unacked)
            acked.update(dict.fromkeys(unacked, True))
            live = sorted(i for i, up in acked.items() if up)
            assert listed == live[::-1]
            assert store.stats().image_count == len(live)
            # Deletes replayed from the log free their slots at once.
            assert len(store._slot_ids) - len(store._free_slots) == len(live)
            for image_id, up in acked.items():
                assert (store.get_many([image_id]) != [None]) == up, image_id
            names = {f"f{k}.jpg" for k in range(9)} | {"after.jpg"}
            assert {store.get(i).filename for i in live} <= names
            # A delete after the reopen frees a slot and the next put takes a free one.
            store.delete(live[0])
            acked[live[0]] = False
            slots = len(store._slot_ids)
            acked[store.put("after.jpg", "ann", _image_of(store, live[1])).image.id] = True
            assert len(store._slot_ids) == slots
        finally:
            store.close()


def _image_of(store: ColumnStore, image_id: str) -> PreparedImage:
    return prepare_image(store.read_data(image_id)[1])
