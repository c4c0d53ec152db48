"""The fixed-width id array (id_array.py) and the id-sorted slot lists (filename_index.SlotIndex)
on their own, and the store's ids kept in them: ids as the store makes them and ids of any
other shape, read back, hashed, sorted and listed exactly as strings would be."""

from __future__ import annotations

import random
import subprocess
import sys
import zlib

import numpy as np
import pytest

from storage_service.columnstore.errors import ImageNotFoundError
from storage_service.columnstore.filename_index import SlotIndex
from storage_service.columnstore.id_array import IdArray, id_bytes, key_hash
from storage_service.columnstore.model import AnalysisStatus, AnnotationUpdate
from storage_service.columnstore.store import ColumnStore
from tests.conftest import REPO_ROOT
from tests.storage_service.conftest import (
    MARK_READY,
    SMALL_MEMTABLE,
    listed_ids,
    put_images,
    take_slot,
)
from tests.storage_service.test_slot_map import ODD_IDS


def _store_like_ids(count: int, seed: int = 1) -> list[str]:
    """Ids shaped as ColumnStore._new_id makes them: ms, counter, 8 random bytes."""
    rng = random.Random(seed)
    ms = 0x0196F0A1B2C3
    out = []
    for i in range(count):
        ms += rng.choice((0, 0, 1, 7))
        out.append(f"{ms:012x}{i % 3:04x}{rng.getrandbits(64):016x}")
    return out


def test_store_made_ids_are_kept_as_16_bytes_and_read_back_exactly():
    ids = _store_like_ids(5000)
    arr = IdArray()
    for image_id in ids:
        arr.append(image_id)
    assert [arr[i] for i in range(len(arr))] == ids
    assert arr.odd_count == 0
    assert arr.nbytes < 24 * len(ids)  # 16 bytes an id plus growth room
    again = IdArray()
    again.assign(ids)
    assert list(again) == ids and again.odd_count == 0
    with pytest.raises(IndexError):
        arr[len(ids)]


def test_ids_of_any_other_shape_are_kept_as_strings_and_told_apart():
    ids = _store_like_ids(50)
    mixed = [*ids[:25], *ODD_IDS, "", *ids[25:]]
    for image_id in ODD_IDS:
        assert id_bytes(image_id) is None, image_id
    arr = IdArray()
    arr.assign(mixed)  # the slow path: not all hex
    assert list(arr) == mixed
    assert arr.odd_count == len(ODD_IDS) + 1
    # A slot going from odd to hex and back keeps exactly what was written.
    arr[0], arr[25] = "Z", ids[0]
    assert arr[0] == "Z" and arr[25] == ids[0]
    arr[0] = ids[1]
    assert arr[0] == ids[1] and arr.odd_count == len(ODD_IDS)  # slot 25 went to hex
    # The all-zero id and an odd id (whose bytes are zero) do not match each other.
    zero = "0" * 32
    arr[1] = zero
    h, raw = arr.key(zero)
    assert arr.matches(1, zero, raw) and not arr.matches(27, zero, raw)
    assert arr.matches(27, ODD_IDS[2], arr.key(ODD_IDS[2])[1])
    # 32 characters each but not all lowercase hex: the one-pass path notices and falls back.
    for other in ["A" * 32, "ab " * 10 + "ab", "g" * 32]:
        same_width = [*ids[:10], other, *ids[10:20]]
        arr.assign(same_width)
        assert list(arr) == same_width and arr.odd_count == 1, other


def test_hashes_agree_between_keys_stored_slots_and_the_vectorised_path():
    ids = [*_store_like_ids(3000), *ODD_IDS]
    arr = IdArray()
    arr.assign(ids)
    slots = np.arange(len(ids))
    vectorised = arr.hashes(slots).tolist()
    for slot, image_id in enumerate(ids):
        assert arr.key(image_id)[0] == vectorised[slot] == arr.hash_at(slot), image_id
    # Spread: 3010 ids fill about 4096 * (1 - exp(-3010 / 4096)) = 2131 of 4096 buckets at random.
    assert len({h & 4095 for h in vectorised}) > 2050
    # The same number in another process (not Python's per-process hash of a str).
    code = (
        "from storage_service.columnstore.id_array import IdArray as A; "
        f"print(A().key({ids[7]!r})[0], A().key({ODD_IDS[7]!r})[0])"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    assert [int(x) for x in out] == [key_hash(ids[7], id_bytes(ids[7])), arr.key(ODD_IDS[7])[0]]


def test_sorting_slots_by_id_and_their_crc32_match_the_strings():
    ids = _store_like_ids(4000, seed=5)
    random.Random(2).shuffle(ids)
    arr = IdArray()
    arr.assign(ids)
    slots = np.array(random.Random(3).sample(range(len(ids)), 3000), dtype=np.int64)
    order = arr.argsort(slots)
    assert [ids[s] for s in slots[order]] == sorted(ids[s] for s in slots)
    crcs = arr.crc32s(slots).tolist()
    assert crcs == [zlib.crc32(ids[s].encode()) for s in slots.tolist()]
    # With odd ids among them: string order still (upper case before lower, and so on).
    for image_id in ODD_IDS:
        arr.append(image_id)
    every = np.arange(len(arr))
    assert [arr[s] for s in every[arr.argsort(every)]] == sorted(arr)
    assert arr.crc32s(every).tolist() == [zlib.crc32(i.encode()) for i in arr]


def test_slot_lists_stay_sorted_by_id_through_adds_removes_and_slot_reuse():
    rng = random.Random(9)
    arr = IdArray()
    index = SlotIndex(arr)
    model: dict[str, set[int]] = {"a": set(), "b": set()}
    free: list[int] = []
    pool = _store_like_ids(6000, seed=4)
    used: set[str] = set()
    for step in range(6000):
        key = rng.choice("ab")
        if model[key] and rng.random() < 0.3:
            slot = rng.choice(sorted(model[key]))
            index.remove(key, slot)  # before its id goes
            model[key].discard(slot)
            arr[slot] = ""
            free.append(slot)
            continue
        # Mostly newer ids (appended), some older ones and odd ones (inserted in the middle).
        image_id = pool[step] if rng.random() < 0.8 else rng.choice([*pool[:step], *ODD_IDS])
        image_id = image_id if image_id not in used else f"{image_id}-{step}"
        used.add(image_id)
        slot = take_slot(arr, free, image_id)
        index.add(key, slot)
        index.add(key, slot)  # twice: listed once
        model[key].add(slot)
    for key, slots in model.items():
        listed = list(index.slots(key))
        assert listed == sorted(slots, key=arr.__getitem__), key
        assert index.count(key) == len(slots)
        # A page token's place: how many ids sort before it.
        for probe in [arr[listed[len(listed) // 2]], "", "~", ODD_IDS[5]]:
            assert index.before(key, probe) == sum(arr[s] < probe for s in listed)
        # Loaded at once from a sorted array: the same list.
        again = SlotIndex(arr)
        again.load(key, np.array(listed))
        assert list(again.slots(key)) == listed
    assert len(index) == sum(len(v) for v in model.values())
    assert index.nbytes == 4 * len(index)
    index.load("a", np.array([], dtype=np.int64))
    assert list(index.slots("a")) == [] and index.count("a") == 0


def test_the_store_keeps_its_ids_fixed_width_and_tells_odd_lookups_apart(tmp_path, small_images):
    store = ColumnStore.open(tmp_path / "s", SMALL_MEMTABLE)
    ids = put_images(store, small_images[:12], ("ann",))
    assert all(id_bytes(i) is not None for i in ids)
    assert store._slot_ids.odd_count == 0
    assert list(store._slot_ids) == ids
    lettered = next(i for i in ids if i != i.upper())
    for wrong in [lettered.upper(), lettered[:-1], lettered + "0", " " + lettered[1:], *ODD_IDS]:
        with pytest.raises(ImageNotFoundError):
            store.get(wrong)
        assert store.get_many([wrong]) == [None]
    store.close()
    reopened = ColumnStore.open(tmp_path / "s", SMALL_MEMTABLE)
    assert sorted(reopened._slot_ids) == sorted(ids) and reopened._slot_ids.odd_count == 0
    assert [m.id for m in reopened.list_images(page_size=100).images] == sorted(ids)[::-1]
    for i, image_id in enumerate(ids):
        assert reopened.get(image_id).filename == f"{i}.jpg"
    reopened.close()


def test_images_changed_out_of_order_are_listed_newest_first_in_every_list(tmp_path, small_images):
    # Starring, analysing, trashing and restoring in shuffled order puts old images back into
    # the middle of the id-sorted lists; every listing still pages newest first.
    store = ColumnStore.open(tmp_path / "s", SMALL_MEMTABLE)
    in_turn = ("bob", "ann", "ann")  # the owners: bob every third image
    ids = put_images(store, small_images[:14], in_turn)
    rng = random.Random(4)
    starred, done, trashed = rng.sample(ids, 8), rng.sample(ids, 9), rng.sample(ids, 4)
    for image_id in starred:
        store.update_annotations(
            image_id, AnnotationUpdate(fields=frozenset({"favourite"}), favourite=True)
        )
    for image_id in done:
        store.update_annotations(image_id, MARK_READY)
    for image_id in trashed:
        store.update_annotations(
            image_id, AnnotationUpdate(fields=frozenset({"trashed"}), trashed=True)
        )
    store.update_annotations(
        trashed[0], AnnotationUpdate(fields=frozenset({"trashed"}), trashed=False)
    )
    in_trash = set(trashed[1:])

    def expect(keep) -> list[str]:
        return sorted((i for i in ids if keep(i)), reverse=True)

    owners = {i: in_turn[k % len(in_turn)] for k, i in enumerate(ids)}
    for _round in range(2):
        assert listed_ids(store, 5) == expect(lambda i: i not in in_trash)
        assert listed_ids(store, 5, favourite_only=True) == expect(
            lambda i: i in starred and i not in in_trash
        )
        assert listed_ids(store, 5, trashed_only=True) == expect(lambda i: i in in_trash)
        assert listed_ids(store, 5, status=AnalysisStatus.READY) == expect(
            lambda i: i in done and i not in in_trash
        )
        assert listed_ids(store, 5, owner="ann", status=AnalysisStatus.PENDING) == expect(
            lambda i: i not in done and i not in in_trash and owners[i] == "ann"
        )
        assert listed_ids(store, 5, owner="bob") == expect(
            lambda i: i not in in_trash and owners[i] == "bob"
        )
        # The same after a reopen (the lists built in one sort at open).
        store.close()
        store = ColumnStore.open(tmp_path / "s", SMALL_MEMTABLE)
    store.close()
