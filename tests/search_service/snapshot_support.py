"""A held snapshot writer for tests of what a snapshot holds while writes go on: the real
writer (snapshot.write_snapshot), held before it writes until the test releases it."""

from __future__ import annotations

import errno
import threading
from pathlib import Path

from search_service.durable_index import DurableIndex
from search_service.snapshot import read_snapshot, write_snapshot

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
