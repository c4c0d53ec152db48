"""For tests of what a snapshot holds while writes go on: the real snapshot writer
(snapshot.write_snapshot) held before it writes until the test releases it, an index that
snapshots only when told to, and the checks that a snapshot's sections are the reference's."""

from __future__ import annotations

import errno
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from search_service import durable_index
from search_service.durable_index import DurableIndex
from search_service.engine import EngineParams
from search_service.inverted_index import FIELDS
from search_service.snapshot import flatten, read_snapshot, write_snapshot

WAIT_S = 30.0  # the most any step may take before the test fails instead of hanging


class HeldWriter:
    """The real snapshot writer, held before it writes until `release` is set; records the
    `applied_seq` of each snapshot file it wrote."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.release = threading.Event()
        self.seqs: list[int] = []
        self.fail_next = False

    def __call__(self, path: Path, sections, *args, **kwargs) -> int:
        self.entered.set()
        assert self.release.wait(WAIT_S), "the test never released the snapshot"
        if self.fail_next:
            self.fail_next = False
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        size = write_snapshot(path, sections, *args, **kwargs)
        self.seqs.append(int(read_snapshot(path)["seq"]))
        return size


class SnapshotInThread:
    """index.snapshot() on a thread of its own, started at once; `finish()` releases the held
    writer, waits for the snapshot and raises what it raised."""

    def __init__(self, index: DurableIndex, held: HeldWriter) -> None:
        self._held = held
        self._failure: list[BaseException] = []
        self._thread = threading.Thread(target=self._run, args=(index,), daemon=True)
        self._thread.start()

    def _run(self, index: DurableIndex) -> None:
        try:
            index.snapshot()
        except BaseException as exc:  # surfaced by finish()
            self._failure.append(exc)

    def finish(self) -> None:
        self._held.release.set()
        self._thread.join(WAIT_S)
        assert not self._thread.is_alive(), "the snapshot did not finish"
        assert not self._failure, self._failure


def hold_snapshots(monkeypatch: pytest.MonkeyPatch) -> HeldWriter:
    """A HeldWriter in the place of the snapshot writer DurableIndex calls."""
    held = HeldWriter()
    monkeypatch.setattr(durable_index, "write_snapshot", held)
    return held


def snapshot_held_after_freeze(index: DurableIndex, held: HeldWriter) -> SnapshotInThread:
    """index.snapshot() started on a thread of its own, once it has frozen the index and is
    held before reading anything of it."""
    snapshot = SnapshotInThread(index, held)
    assert held.entered.wait(WAIT_S), "the snapshot never reached its writer"
    return snapshot


def open_live(path: Path, params: EngineParams) -> DurableIndex:
    """A DurableIndex at `path` that snapshots only when the test calls snapshot()."""
    return DurableIndex.open(path, params, snapshot_every=10**9, snapshot_interval_s=float("inf"))


def reopen(live: DurableIndex, path: Path, params: EngineParams) -> DurableIndex:
    """Closes `live` without a snapshot of its own (the one on disk stays the one under test)
    and opens `path` again, as a restart does."""
    live._unsaved = 0
    live.close()
    return DurableIndex.open(path, params)


def reference_sections(reference: DurableIndex, seq: int, path: Path) -> dict[str, Any]:
    """The sections of a snapshot of `reference` named `seq`, written to `path` by the real
    writer and read back."""
    write_snapshot(path, flatten({"seq": seq, "engine": reference._index.frozen_state()}))
    return read_snapshot(path)


def written_table(sections: dict[str, Any]) -> dict[str, tuple[int, dict[str, int]]]:
    """The suggestion table a snapshot's sections hold (whatever the order of its texts)."""
    prefix = "engine.keywords."
    texts = bytes(sections[prefix + "surface_text"]).decode().split("\0")[:-1]
    counts = sections[prefix + "surface_counts"].tolist()
    assert len(texts) == len(counts) == len(set(texts))
    table: dict[str, tuple[int, dict[str, int]]] = {
        t: (c, {}) for t, c in zip(texts, counts, strict=True)
    }
    for i, f, c in zip(
        sections[prefix + "surface_field_entry"].tolist(),
        sections[prefix + "surface_field"].tolist(),
        sections[prefix + "surface_field_count"].tolist(),
        strict=True,
    ):
        table[texts[i]][1][FIELDS[f]] = c
    return table


# The sections of the posting lists, written in the order the index made the lists.
_POSTING_SECTIONS = frozenset(
    "engine.keywords." + name
    for name in (
        "term_fields",
        "term_text",
        "ids_blob",
        "ids_offsets",
        "weights_blob",
        "weights_offsets",
        "lasts",
    )
)


def written_postings(sections: dict[str, Any]) -> dict[tuple[str, str], tuple[bytes, bytes, int]]:
    """The posting lists a snapshot's sections hold, (field, word) -> (id bytes, weight bytes,
    last document), whatever their order. The order is the one the index made the lists in,
    and that follows how its changes were cut into put_many batches: DurableIndex.apply takes
    64 upserts a part while a search started in the last second (in this process: another
    test's), 256 otherwise, and a batch makes its new lists in its own term order. So an index
    and a reference given the same changes hold the same lists, in an order that may differ."""
    prefix = "engine.keywords."
    fields = sections[prefix + "term_fields"].tolist()
    text = sections[prefix + "term_text"]
    if text is None:  # a word holds a NUL: the terms are in the meta section (JSON)
        words = [w for _, w in sections[prefix + "meta"]["terms"]]
    else:
        words = bytes(text).decode().split("\0")[:-1]
    ids, weights = bytes(sections[prefix + "ids_blob"]), bytes(sections[prefix + "weights_blob"])
    id_at = sections[prefix + "ids_offsets"].tolist()
    weight_at = sections[prefix + "weights_offsets"].tolist()
    lasts = sections[prefix + "lasts"].tolist()
    assert len(fields) == len(words) == len(lasts) == len(id_at) - 1 == len(weight_at) - 1
    assert id_at[-1] == len(ids) and weight_at[-1] == len(weights)
    table = {
        (FIELDS[f], w): (
            ids[id_at[i] : id_at[i + 1]],
            weights[weight_at[i] : weight_at[i + 1]],
            lasts[i],
        )
        for i, (f, w) in enumerate(zip(fields, words, strict=True))
    }
    assert len(table) == len(fields), "a posting list written twice"
    return table


def assert_same_sections(got: dict[str, Any], want: dict[str, Any]) -> None:
    """Every section of `want` in `got`, equal (arrays of the same dtype and shape); the
    suggestion table compared as a table: its texts' order follows the live table's (a text
    removed after the freeze, or removed and added again, moves), not the reference's; the
    posting lists also (written_postings: their order follows how the changes were batched)."""
    assert sorted(got) == sorted(want)
    assert written_table(got) == written_table(want)
    got_lists, want_lists = written_postings(got), written_postings(want)
    differ = sorted(
        key
        for key in got_lists.keys() | want_lists.keys()
        if got_lists.get(key) != want_lists.get(key)
    )
    assert not differ, f"{len(differ)} posting lists differ, (field, word) {differ[:10]}"
    for name in want:
        if name.startswith("engine.keywords.surface_") or name in _POSTING_SECTIONS:
            continue
        a, b = got[name], want[name]
        if isinstance(b, np.ndarray):
            assert a.dtype == b.dtype and a.shape == b.shape, name
            assert np.array_equal(a, b), name
        else:
            assert a == b, name
