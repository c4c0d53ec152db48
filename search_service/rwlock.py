"""A fair readers-writer lock for the search index.

Searches share the read side (their numpy work releases the interpreter lock, so two can run
at once on two cores); a writer holds the write side alone. Admission is in arrival order
(tickets): a writer waits for the searches already running, and searches that arrive after a
waiting writer queue behind it, so a writer putting documents one at a time cannot re-take
the lock at once and starve searches (threading.RLock hands over to no one: the thread that
releases it usually takes it again before a waiting thread wakes), and a stream of searches
cannot starve a writer either. Readers in a row are admitted together.

Re-entrant per thread: a thread holding the read side may take it again (without queueing:
it would wait behind a writer that waits for it), a thread holding the write side may take
either side again. Taking the write side while holding only the read side raises
RuntimeError (two threads doing so would wait for each other forever).

`with lock:` takes the write side (so code written for an exclusive lock keeps its meaning);
`with lock.read():` the read side.
"""

from __future__ import annotations

import threading


class FairRWLock:
    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._cond = threading.Condition(self._mutex)
        self._next_ticket = 0
        # The oldest ticket not yet admitted: only its holder may go in next.
        self._serving = 0
        # Tickets whose holders gave up waiting (interrupted): skipped when reached.
        self._abandoned: set[int] = set()
        self._waiting = 0
        self._readers = 0  # threads holding the read side (not counting re-entries)
        self._writer: int | None = None  # the thread holding the write side
        self._write_depth = 0
        self._local = threading.local()  # this thread's read depth
        self._read_side = _ReadSide(self)

    # ---- read side ---------------------------------------------------------------------------

    def read(self) -> _ReadSide:
        return self._read_side

    def acquire_read(self) -> None:
        me = threading.get_ident()
        if self._writer == me:  # inside its own write: already alone
            self._write_depth += 1
            return
        depth = getattr(self._local, "depth", 0)
        if depth:
            self._local.depth = depth + 1
            return
        with self._mutex:
            ticket = self._take_ticket()
            if self._serving != ticket or self._writer is not None:
                self._wait(ticket, lambda: self._serving == ticket and self._writer is None)
            self._advance()
            self._readers += 1
            if self._waiting:  # the next in line may be a reader that can come in too
                self._cond.notify_all()
        self._local.depth = 1

    def release_read(self) -> None:
        if self._writer == threading.get_ident():
            self.release_write()
            return
        depth = getattr(self._local, "depth", 0)
        if depth <= 0:
            raise RuntimeError("release_read without acquire_read")
        self._local.depth = depth - 1
        if depth > 1:
            return
        with self._mutex:
            self._readers -= 1
            if self._readers == 0 and self._waiting:
                self._cond.notify_all()

    # ---- write side --------------------------------------------------------------------------

    def acquire_write(self) -> None:
        me = threading.get_ident()
        if self._writer == me:
            self._write_depth += 1
            return
        if getattr(self._local, "depth", 0):
            raise RuntimeError("cannot take the write side while holding the read side")
        with self._mutex:
            ticket = self._take_ticket()
            if self._serving != ticket or self._writer is not None or self._readers:
                self._wait(
                    ticket,
                    lambda: self._serving == ticket and self._writer is None and not self._readers,
                )
            self._advance()
            self._writer = me
            self._write_depth = 1

    def release_write(self) -> None:
        if self._writer != threading.get_ident():
            raise RuntimeError("release_write by a thread not holding the write side")
        self._write_depth -= 1
        if self._write_depth:
            return
        with self._mutex:
            self._writer = None
            if self._waiting:
                self._cond.notify_all()

    def __enter__(self) -> FairRWLock:
        self.acquire_write()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release_write()

    # ---- state (tests, diagnostics) ----------------------------------------------------------

    @property
    def readers(self) -> int:
        return self._readers

    @property
    def waiting(self) -> int:
        return self._waiting

    def held_by_me(self) -> bool:
        return self._writer == threading.get_ident() or bool(getattr(self._local, "depth", 0))

    # ---- internals (under _mutex) ------------------------------------------------------------

    def _take_ticket(self) -> int:
        ticket = self._next_ticket
        self._next_ticket += 1
        return ticket

    def _advance(self) -> None:
        self._serving += 1
        while self._serving in self._abandoned:
            self._abandoned.discard(self._serving)
            self._serving += 1

    def _wait(self, ticket: int, ready: object) -> None:
        assert callable(ready)
        self._waiting += 1
        try:
            while not ready():
                self._cond.wait()
        except BaseException:
            # Interrupted while queued: give the ticket up so the ones behind are not stuck.
            if self._serving == ticket:
                self._advance()
            else:
                self._abandoned.add(ticket)
            self._cond.notify_all()
            raise
        finally:
            self._waiting -= 1


class _ReadSide:
    __slots__ = ("_lock",)

    def __init__(self, lock: FairRWLock) -> None:
        self._lock = lock

    def __enter__(self) -> None:
        self._lock.acquire_read()

    def __exit__(self, *exc: object) -> None:
        self._lock.release_read()
