"""Where the stalls come from while a snapshot is written:
`python -m benchmarks.snapshot_stall_probe N [rounds]`.

Builds the scale bench's synthetic index of N documents once (benchmarks/scale_search_bench.py's
Corpus, with semantic expansion, no approximate vector index) and keeps its snapshot under
/tmp/snapshot-stall-probe-N; later runs load it. Each round then writes a snapshot while one
thread puts documents one at a time and another searches (default path), as the scale bench
does, and a fourth thread sleeps 0.5 ms at a time and notes how late it wakes (how long it
waited for the interpreter lock). Printed per round: the longest search and write, the
longest wait of the sleeper, the snapshot's steps (time to make each section's value, time to
write it) and, for the longest stalls, which snapshot step ran meanwhile.
PROBE_MODES=as-is,interval alternates rounds with the interpreter's switch interval at its
default and at 1 ms; PROBE_MODES=as-is,noyield with the snapshot's pauses waiting for the
searches in flight (snapshot.Foreground) or not. PROBE_ANN=1 builds the faiss IVF index
after loading and saves it at every snapshot.

Each round first runs the same threads for PROBE_BASELINE_S (3 s) with no snapshot: the
stalls the machine makes by itself in the same run, printed as "[no snapshot]".

Last session, at 1M (load 8): longest search 287-351 ms, write 200-240 ms, view frozen in
65 ms; the waits came from sharing the GIL with the snapshot's Python work on the keyword
metadata (terms and suggestion table as JSON, every posting list decoded or counted). This
session (posting lists read from recorded sizes, terms and suggestion table as arrays and
text, every long loop paced by snapshot.Pacer, lengths and concept weights not copied under
the write lock), 1M documents at load 2.4-2.6: longest search 91-98 ms against 39-41 ms with no
snapshot in the same run, longest write 228-232 ms (the freeze, 282 ms that run; other writes
113-168 ms) against 37-41 ms; a later run after the freeze stopped copying lengths and concept
weights: freeze 65 ms, longest write 135-203 ms against 18-67 ms (its searches stalled 0.4-1.4 s
with no snapshot at all while the writing thread ran 6x faster than in the earlier runs; not
explained). At 200k (load 5): searches 52-55 ms, writes 60-83 ms while the snapshot ran, the
same as with no snapshot (64-139 / 26-59 ms); before this session's changes in the same
conditions 94-141 / 127-147 ms.

This session (the fair index lock, rwlock.py; PROBE_LOCKS=fair,rlock runs both in the same
run): 100k documents, load 4, puts one at a time and searches, no snapshot, three rounds each:
searches waited for the lock at most 7.8-16 ms with the fair lock against 57-70 ms with RLock
(longest search 16-36 against 62-75 ms); writes 204-217/s against 257-280/s (puts and searches
now alternate one for one: 611-650 of each, RLock 774-841 puts to 497-617 searches). 1M at
load 7.5-8.2 (other work on the machine), one round each: no snapshot, lock waits 34 ms
(p99 18) against 15 ms (p99 11), longest search 42 against 102 ms, writes 95/s against
128/s; while a snapshot was written, lock waits 126 ms (p99 24) against 179 ms (p99 61),
longest search 289 against 362 ms, writes 49/s against 60/s, the freeze 21 against 138 ms.
The feed alone (PROBE_FEED=1 PROBE_PUTS=0) at 100k: the same changes/s with either lock at
each apply batch (6.1k / 8.2k / 10.2k for 64 / 128 / 256); the longest search waits follow
the batch's hold (15 / 28 / 42 ms), see durable_index._APPLY_BATCH.

PROBE_FREEZE_ONLY=1 at 1M (1.19M documents, 600k suggestion texts, load 1.0): the keyword
index's freeze under the writers' lock 0.07-0.10 ms CPU now that it no longer copies the
suggestion table (inverted_index._FrozenSurface), against 7-75 ms CPU for that copy timed in
the same run; the snapshot's read of the view instead lists the texts in one 3 ms call and
reads their entries in 1-2 ms slices (214-269 ms CPU in all, paced, outside the lock).

Round 17, 1.19M documents (PROBE_STACKS_MS=15 names the holders): the snapshot thread held
the interpreter lock 25-150 ms at a time appending every posting list to one bytearray and
150-220 ms freeing the frozen view's 1.2M list copies when it returned; with those gone the
sleeper was never late more than 16 ms, yet searches still took 90-140 ms (40 ms CPU, half the
rest waiting for a CPU). PROBE_MODES=as-is,noyield, load 3.2-3.7: searches p99 44-46 ms,
longest 53-88 ms with the snapshot's pauses waiting for searches in flight, 81-88 / 91-267 ms
without (no snapshot: 39-58 / 45-75 ms); snapshot 18-20 s against 7-11 s. PROBE_FEED=1 at load
7-9: p99 194-225 / 305-369 ms, 157-266 ms with no snapshot (a feed part's hold of the index
lock). PROBE_FIRST=1 (1M built in the process, load 2.5-2.7): the first snapshot 42 s, p99
38 ms, longest 73 ms, the second p99 37 / 53 ms (no snapshot 29-31 / 33-126 ms); before the
frozen view let go of the rows, the first one's end freed them at once (449 ms). A feed
apply's parts at 64 upserts while searches come in (PROBE_FEED=1, load 1.1): p99 50 ms, longest
64 ms during a snapshot (no snapshot 49-51 / 49-52; pauses not waiting 135 / 171 ms); with
PROBE_APPLY_BATCHES=64,256 (load 1.7-2.2, before that change): 49 / 73 against 83 / 252 ms.
Round 18, the same with 256 really 256 while searched (1.22M documents, load 1.6-1.8, one
round each): parts of 64, p99 47 / longest 49 ms with no snapshot, 50 / 72 ms during one (the
index lock held at most 40 / 30 ms, feed 2730 / 1579 changes/s); parts of 256, 72 / 72 and
58 / 92 ms (held 50 / 71 ms, feed 4092 / 1523 changes/s). Not re-measured at load 7-9. A
re-put's replaced document is now analysed before the index lock (engine.prepare_removals):
a part of 64 re-puts held it 9.6 ms CPU against 14.0 at 20k documents (/tmp profile, the
analysis ~0.25 ms a document moved to the writers' lock only).
With that change (load 1.0-1.4): 64, p99 46 / 50 ms, longest 768 (one 766 ms CPU hold of the
writers' lock, not explained) / 59 ms; 256, 65 / 65 and 51 / 67 ms. This probe's feed puts new
images (each one's two changes fall in one part), so it makes no re-puts: the prepared removal
is not exercised here.

Round 19: PROBE_REPUT=1 (re-puts), PROBE_GC_FREEZE=1, PROBE_FEED_IMAGES, the collector's
passes per round and inside the longest lock holds. 1.04M documents (the 1M index built in
9 min 40 s at load ~9, grown by the runs' own snapshots), feed + a thread putting one at a time
+ searches, PROBE_STACKS_MS=30, one run of two rounds per line unless said.
The 0.77 s hold of round 18 was the cyclic collector: a full (generation 2) pass over the
documents this probe makes before its rounds (a Document and its 20 Labels, ~23 tracked
objects), run in the feed thread while it held the writers' lock. Reproduced with re-puts at
load 3.6 (240k documents made): a 1688 ms hold of the writers' lock with a 1652 ms generation-2
pass (1533 ms CPU) in it, searches p99 1682 ms in that 3 s round. Timed with PROBE_GC_FREEZE=1:
a full pass over the 5.49M tracked objects 1372-1522 ms CPU (round 18's runs made fewer
documents); after the freeze no generation-2 pass fell in any round. A service makes no such
store; what a change leaves tracked (a /tmp script, 20k documents, no snapshot between): 3.0
objects a new put, 10.4 a re-put, a full pass over 60k / 270k of them 26 / 100 ms CPU.
Two faults of the probe fixed: with no PROBE_APPLY_BATCHES it set both part sizes to 256, so
a plain run measured parts of 256 while searched, not the index's 64 (now the index's own
sizes); and a run's "new" images had the numbers the last run's feed put, kept by its
snapshots (now numbered past the index's; rounds print the feed upserts that replaced a
document: 0 for new images).
- New images, parts of 256 while searched (the old default, before those fixes), load
  4.5-5.2, the feed's 20k images ran out during the snapshots: no snapshot p99 71-89 ms,
  longest 90-92 ms, 5.5-6.8k changes/s; during one (26 s) p99 76-92 ms, longest 161-215 ms
  (the longest 196 ms waiting for a CPU), 1.5k changes/s.
- New images, parts of 64, collector frozen, load 7.3-7.6 (three busy loops in the probe's
  own scheduler group; loops started with setsid, each its own autogroup, left the probe 20%
  of a CPU and were stopped), load 7.3-8.4: no snapshot p99 310 / 640 ms (34 / 16 searches in
  3 s), during a snapshot (42-44 s) p99 189 / 239 ms, longest 242 / 459 ms, 742-777 changes/s.
  Parts hold the index lock 30-80 ms of CPU and 4-10x that in wall time at this load (the
  holder waits for a CPU while holding it); three held it 801-889 ms (135-193 ms CPU). At
  load 7-9, p99 is not under 100 ms with parts of 64.
- Re-puts, parts of 64, collector not frozen, load 3.4-4.0: besides the pass above, no
  snapshot p99 53 ms, during one (27-30 s) p99 73-98 ms, longest 95-156 ms; 942-1052
  changes/s (1167-1363 with no snapshot).
- Re-puts, collector frozen, load 2.4-2.9: no snapshot p99 49-52 ms, longest 53-62 ms,
  1361-2730 changes/s; during a snapshot (33-34 s) p99 72-76 ms but longest 492-583 ms, 957-993
  changes/s: once each round a part of 64 re-puts held the index lock 460-530 ms (129-195 ms
  CPU, against 30-50 ms for the other parts). At one such wake the feed was in
  postings.append_runs and the snapshot in PostingList.sizes, at another the feed in a
  re-put's removal (_count_surface, the suggestion entries' copy on write). Not explained;
  the lead: at the long wakes of the snapshot rounds the feed is mostly in the suggestion
  table's counting (_count_surface_batch for new images, _count_surface for removals) while
  the snapshot reads that table's frozen view (_read_frozen_surface), with new images too.
- Re-puts, collector frozen, one round, load 11-21 (the busy loops above plus other work that
  came meanwhile; the loops were stopped during its snapshot): no snapshot p99 479 ms (12
  searches), during a snapshot (44 s) p99 312 ms, longest 699 ms, 562 changes/s; the index
  lock held up to 641 ms with 62 ms CPU: at that load a hold is mostly the holder waiting for a
  CPU.

Round 20: a feed part worked out before the index lock (SearchIndex.prepare_put; PROBE_PREPARE=
off,on alternates it with the old path, durable_index.PREPARE_PARTS), PROBE_BUSY=3 (the busy
loops as processes of the probe's own), and each round prints the feed thread's index lock
holds (CPU and wall p50 / p90 / mean / longest) apart from the writer's. 1.00-1.07M documents,
new images, parts of 64 (32 images put twice), feed + writer + searches, collector frozen, two
rounds, old / new: the feed's holds took 6.4-7.7 / 3.5-4.2 ms CPU at p50 (p90 7.6-9.2 /
4.2-5.1, longest 19-53 / 9-20) and 19-26 / 11.5-13 ms wall at p50 (p90 31-42 / 17.5-24); with
no snapshot searches p50 42-52 / 31 ms, p99 131-159 / 135-140 ms (load 2.6-7.9); during a
snapshot (50-57 s) their p99 wait for the lock 54-80 / 37-50 ms, searches p50 37-40 / 40 ms,
p99 163-172 / 163-174 ms, longest 305-531 / 277-311 ms (load 5.2-8.1), feed 700-792 / 642-654
changes/s. The 30-80 ms CPU per part of round 19 were the longest holds' CPU (as printed
then): the typical part took 6-8 ms CPU at load 7-8 (4.5 ms with the machine idle, the rest
the busy loops sharing the cores), its long ones held collector passes (one gen-1 pass of
270 ms wall, 13 ms CPU in a 393 ms hold; the 531 ms search waited for it). Halving the hold
did not move p99: at load 7-8 a search's own 8-40 ms of CPU waits several times that for a
CPU (a 251 ms search: 32 ms CPU, 238 ms runnable but not running; 234 ms: 40 and 161), which
no lock change reaches.
- Re-puts (PROBE_REPUT=1, parts of 64 re-puts), the same three busy loops, load 5.8-7.5, two
  rounds, old / new (the part prepared, its removals still counted a document at a time):
  with no snapshot the feed's holds took 23-37 / 11-12 ms CPU at p50 (p90 45-69 / 29-34)
  and 92-106 / 22-25 ms wall at p50 (p90 290-366 / 58-71); searches p50 49-51 / 24-26 ms,
  p99 327-431 / 103-340 ms (27-41 / 82-88 searches in 3 s; the 340 ms one held a generation-2
  collector pass). During a snapshot (37-50 s): holds 18-19 / 13-14 ms CPU at p50 (p90 23-26 /
  15-16), 43-46 / 26-35 ms wall (longest 103-692 / 117-280); the searches' p99 wait for the
  lock 82-217 / 66-121 ms; searches p50 41-48 / 26-37 ms, p99 126-401 / 132-232 ms, longest
  171-707 / 177-746 ms; feed 444-542 / 396-531 changes/s. Re-puts were the 30-80 ms parts:
  the removals (suggestion counts a document at a time) were half of the hold left, now summed
  per text before the lock (engine.prepare_put, InvertedIndex.surface_removals): by the /tmp
  harness over DurableIndex.apply at 1M and load 8-8.5, a part's hold 22.1 -> 8.7 ms CPU at
  p50 (wall 63.7 -> 20.8, longest 732 -> 90 ms), the apply's whole CPU unchanged (40 ms).
- Re-puts again with that too, no busy loops of the probe's own but load 11-18 from other
  work (another session's busy loops and browser tests), two rounds, old / new: holds 19-22 /
  9-11 ms CPU at p50 during a snapshot and in round 2 with none (p90 23-25 / 11.5-12; round
  1's 25 holds with no snapshot 21 ms, not explained), 28-134 / 11-19 ms wall at p50; the
  searches' p99 wait for the lock 138-385 / 20-182 ms; searches with no snapshot p99 377-386 /
  109-557 ms (33-60 / 31-96 searches in 3 s), during a snapshot p99 388-562 / 207-323 ms,
  longest 684-877 / 379-2287 ms (the 2287 ms search: 30 ms CPU, 2045 ms runnable, no
  collector pass in the round); feed 293-381 / 317-488 changes/s. At that load the CPUs, not
  the lock, set the searches' tail.
"""

from __future__ import annotations

import dataclasses
import gc
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks import scale_search_bench as bench
from search_service import durable_index as durable_module
from search_service import snapshot as snap_module
from search_service.durable_index import DurableIndex, FeedChange
from search_service.engine import EngineParams, SearchIndex
from search_service.gc_control import collector_paused
from search_service.rwlock import FairRWLock
from search_service.semantic import ConceptSpace
from search_service.vector_index import AnnParams

PARAMS = EngineParams(ann=AnnParams(threshold=1 << 62))
WRITES = 20_000
# PROBE_FEED=1: a feed thread applies changes meanwhile, FEED_GATHER at a time (the consumer's
# gathered batch), each new image put twice (PENDING, then READY analysed) as storage's feed
# sends them.
FEED = os.environ.get("PROBE_FEED") == "1"
FEED_GATHER = 4096
# PROBE_GC_FREEZE=1: after making the rounds' documents (this probe's own, a service has no
# such store of them), time one full collection and move every object into the collector's
# permanent generation (gc.freeze), so no later pass walks them; off, a full pass that falls
# in a round walks them all, in whichever thread allocated last (see the collector's passes
# printed per round and inside the longest lock holds).
GC_FREEZE = os.environ.get("PROBE_GC_FREEZE") == "1"
# PROBE_FEED_IMAGES: images the feed has for each round (it stops when they run out; at 1M a
# snapshot at load 5 outlasts 20k images' 40k changes).
FEED_IMAGES_PER_ROUND = int(os.environ.get("PROBE_FEED_IMAGES", "20000"))
# PROBE_REPUT=1: the feed re-puts images already in the index instead of putting new ones:
# each change is an existing image (a random one of the N built, none twice before all N once) with
# another document's labels, tags, OCR text and vector (the image changed and was analysed
# again), one change per image, so every upsert replaces a document and its old analysis is
# made by engine.prepare_removals before the index lock.
REPUT = os.environ.get("PROBE_REPUT") == "1"
# PROBE_LOCKS=fair,rlock: each round once with each index lock (rlock: the threading.RLock of
# before, one lock for searches and writes alike).
LOCKS = os.environ.get("PROBE_LOCKS", "fair").split(",")
# PROBE_APPLY_BATCHES=64,256: upserts a feed apply puts in under the lock at once
# (durable_index's _APPLY_BATCH and _APPLY_BATCH_SEARCHED both, so 256 is 256 while searches
# come in), each in turn in the same run like the locks. Unset: the index's own sizes (256,
# 64 while searched: 64 here, where searches always come in); before this round the default
# was 256 for both, so a run without it measured parts of 256, not the index as it is.
_BATCHES = os.environ.get("PROBE_APPLY_BATCHES", "")
APPLY_BATCHES: list[int | None] = [int(b) for b in _BATCHES.split(",")] if _BATCHES else [None]
# PROBE_APPLY=parts,whole: a feed apply takes the writers' lock once per part (as the index
# does), or holds it for the whole apply (durable_index.APPLY_WHOLE, before), each in turn.
APPLY_MODES = os.environ.get("PROBE_APPLY", "parts").split(",")
# PROBE_PREPARE=on,off: a feed part is worked out before the index lock (on: as the index
# does, durable_index.PREPARE_PARTS) or mostly under it (off: only the replaced documents'
# analyses before it, as before), each in turn.
PREPARE_MODES = os.environ.get("PROBE_PREPARE", "on").split(",")
# PROBE_BUSY=3: this many busy loops (processes of the probe's own, in its session and so its
# scheduler group) spin while the rounds run, for the load 7-9 case on 2 cores; stopped at the
# end.
BUSY = int(os.environ.get("PROBE_BUSY", "0"))
# A busy loop that ends once the probe is gone (a run that dies leaves none spinning).
_BUSY_LOOP = """
import os
parent = os.getppid()
while os.getppid() == parent:
    for _ in range(1_000_000):
        pass
"""
# PROBE_PUTS=0: no thread putting documents one at a time.
PUTS = os.environ.get("PROBE_PUTS", "1") != "0"
# PROBE_SNAPSHOT=0: only the rounds with no snapshot.
SNAPSHOTS = os.environ.get("PROBE_SNAPSHOT", "1") != "0"
# PROBE_FREEZE_ONLY=1: no threads, no snapshot written: each round times (thread CPU and
# wall) the keyword index's freeze under the writers' lock, the copy of the suggestion table
# the freeze made before (dict(_surface), for comparison in the same run), the listing of
# the table's texts the snapshot now makes when it reads the view (one C call, outside the
# lock) and that whole read, with writes applied between the freeze and the read.
FREEZE_ONLY = os.environ.get("PROBE_FREEZE_ONLY") == "1"
# Each round first runs its threads this long with no snapshot (PROBE_BASELINE_S).
BASELINE_S = float(os.environ.get("PROBE_BASELINE_S", "3"))
_CURRENT: list[Any] = []  # the round's Timeline, for the timed freeze parts
# PROBE_FIRST=1: the index is built in this process (documents as rows, no snapshot read)
# under /tmp/snapshot-stall-probe-first-N, so the first round's snapshot is an index's first
# (every document turned from rows into columns); later rounds are after the fold.
FIRST = os.environ.get("PROBE_FIRST") == "1"
# PROBE_STACKS_MS=20: when the sleeper wakes this late (ms), it notes where every other thread
# is at that moment (sys._current_frames): the thread that held the interpreter lock has just
# let go of it, so its innermost frames name the call that held it. The snapshot thread's
# places are summed per place after each round (0: off).
STACKS_MS = float(os.environ.get("PROBE_STACKS_MS", "0"))
# A sleeper in a process of its own (no interpreter lock shared with this one) wakes every
# 0.5 ms too and reports its late wakes (>= 5 ms): a wake of this process's sleeper as late
# as that one's in the same moment is the machine's CPUs (its load), not the interpreter lock.
_OS_SLEEPER = """
import sys, time
while True:
    t = time.perf_counter(); time.sleep(0.0005); w = time.perf_counter()
    if w - t - 0.0005 >= 0.005:
        print(f"{w} {w - t - 0.0005}", flush=True)
"""


class OsSleeper:
    """The sleeper process (see _OS_SLEEPER) and its late wakes: (woke at, how late), on the
    same clock as time.perf_counter here (CLOCK_MONOTONIC)."""

    def __init__(self) -> None:
        self.late: list[tuple[float, float]] = []
        self.proc = subprocess.Popen(
            [sys.executable, "-c", _OS_SLEEPER], stdout=subprocess.PIPE, text=True
        )
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            woke, late = map(float, line.split())
            self.late.append((woke, late))

    def late_in(self, start: float, end: float) -> float:
        """The longest late wake of the sleeper process overlapping [start, end]."""
        return max((w for t, w in self.late if t >= start and t - w <= end), default=0.0)

    def stop(self) -> None:
        self.proc.kill()
        self.proc.wait()


_OS: list[OsSleeper] = []


class Collections:
    """The cyclic garbage collector's passes (gc.callbacks): (start, end, generation, the
    thread that ran it, its thread CPU time in the pass). A pass runs in whichever thread
    allocated past the threshold, holding the interpreter lock and whatever locks that thread
    holds."""

    def __init__(self) -> None:
        self.passes: list[tuple[float, float, int, str, float]] = []
        self._start = (0.0, 0.0)
        gc.callbacks.append(self._note)

    def _note(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._start = (time.perf_counter(), time.thread_time())
        else:
            self.passes.append(
                (
                    self._start[0],
                    time.perf_counter(),
                    info["generation"],
                    threading.current_thread().name,
                    time.thread_time() - self._start[1],
                )
            )

    def within(self, start: float, end: float) -> list[tuple[float, float, int, str, float]]:
        return [p for p in self.passes if p[0] < end and p[1] > start]

    def summary(self, start: float, end: float) -> str:
        passes = self.within(start, end)
        if not passes:
            return "; collector: no passes"
        full = [p for p in passes if p[2] == 2]
        worst = sorted(passes, key=lambda p: p[0] - p[1])[:3]
        return (
            f"; collector: {len(passes)} passes ({len(full)} of generation 2, "
            f"{sum(p[1] - p[0] for p in full) * 1000:.0f} ms in all), longest "
            + ", ".join(
                f"{(b - a) * 1000:.0f} ms ({c * 1000:.0f} CPU, gen {g}, {t})"
                for a, b, g, t, c in worst
            )
        )


_GC = Collections()


class _RLockBoth:
    """The index lock of before: one threading.RLock, searches and writes alike."""

    def __init__(self) -> None:
        self._lock = threading.RLock()

    def read(self) -> Any:
        return self._lock

    def __enter__(self) -> Any:
        return self._lock.__enter__()

    def __exit__(self, *exc: Any) -> None:
        self._lock.__exit__(*exc)


class _Timed:
    """The index lock (or the writers' lock), timed: how long each search waited for the read
    side, how long each writer held the write side (the wait a search, or a put, can meet
    behind one write), and the holding thread's CPU time meanwhile (what the hold costs on a
    machine with a core free: the wall time of a hold grows with the machine's load)."""

    def __init__(self, lock: Any) -> None:
        self.lock = lock
        self.read_waits: list[float] = []
        self.write_holds: list[float] = []
        self.hold_cpu: list[float] = []
        self.hold_spans: list[tuple[float, float, float]] = []  # (start, end, holder's CPU)
        self.hold_threads: list[str] = []  # the holding thread's name, per hold
        self._held_at = 0.0
        self._cpu_at = 0.0
        self._depth = 0
        self._read = _TimedRead(self)

    def read(self) -> Any:
        return self._read

    def __enter__(self) -> None:
        self.lock.__enter__()
        self._depth += 1
        if self._depth == 1:
            self._held_at = time.perf_counter()
            self._cpu_at = time.thread_time()

    def __exit__(self, *exc: Any) -> None:
        self._depth -= 1
        if self._depth == 0:
            end = time.perf_counter()
            self.write_holds.append(end - self._held_at)
            self.hold_cpu.append(time.thread_time() - self._cpu_at)
            self.hold_spans.append((self._held_at, end, self.hold_cpu[-1]))
            self.hold_threads.append(threading.current_thread().name)
        self.lock.__exit__(*exc)


class _TimedRead:
    def __init__(self, timed: _Timed) -> None:
        self.timed = timed

    def __enter__(self) -> None:
        t = time.perf_counter()
        self.timed.lock.read().__enter__()
        self.timed.read_waits.append(time.perf_counter() - t)

    def __exit__(self, *exc: Any) -> None:
        self.timed.lock.read().__exit__(*exc)


def _use_lock(durable: DurableIndex, kind: str) -> _Timed:
    """kind: "fair" (as the index has it), "rlock" (before), "fair-index" (the fair lock for
    the index, the writers' own lock an RLock)."""
    make = FairRWLock if kind.startswith("fair") else _RLockBoth
    timed = _Timed(make())
    durable._lock = timed  # type: ignore[assignment]
    writers = _Timed((_RLockBoth if kind == "fair-index" else make)())
    durable._write_lock = writers  # type: ignore[assignment]
    return timed


class Feed:
    """New images for the feed thread: (seq, doc) pairs, each image put twice; or with
    `reput_of` (PROBE_REPUT=1) the images 0..reput_of-1 already in the index, each re-put once
    with the next document's contents. New images are numbered past every image the index
    holds: a run's snapshots keep the images its feed put, and the next run's feed made the
    same numbers again (before this round, the first tens of thousands of a later run's "new"
    images replaced the same documents)."""

    def __init__(self, durable: DurableIndex, docs: list[Any], reput_of: int = 0) -> None:
        self.durable = durable
        self.docs = docs
        self.next = 0
        self.applied = 0  # changes applied by the current round
        self.replaced = 0  # of them, upserts that replaced a document in the index
        if reput_of:
            import numpy as np

            rng = np.random.default_rng(bench.SEED + 1)  # every image once before any twice
            order = np.concatenate(
                [rng.permutation(reput_of) for _ in range(-(-len(docs) // reput_of))]
            )
            self.docs = [_as_image(d, int(k)) for d, k in zip(docs, order.tolist(), strict=False)]
        else:
            index = durable._index
            k = int(docs[0].image_id.removeprefix("img-")) if docs else 0
            renamed = []
            for d in docs:
                while f"img-{k:08d}" in index:
                    k += 1
                renamed.append(_as_image(d, k))
                k += 1
            self.docs = renamed
        self.reput = bool(reput_of)

    def run(self, done: threading.Event) -> None:
        end = min(len(self.docs), self.next + FEED_IMAGES_PER_ROUND)  # each round its own
        while not done.is_set() and self.next < end:
            seq = self.durable.applied_seq
            changes = []
            step = FEED_GATHER if self.reput else FEED_GATHER // 2
            index = self.durable._index
            for d in self.docs[self.next : min(end, self.next + step)]:
                self.replaced += d.image_id in index
                changes.append(FeedChange(seq + 1, d.image_id, d))
                seq += 1
                if not self.reput:
                    changes.append(FeedChange(seq + 1, d.image_id, d))
                    seq += 1
            self.next += step
            self.durable.apply(changes)
            self.applied += len(changes)
        if self.next >= end:
            print("    (the feed ran out of images this round)", flush=True)
        self.next = end


def _as_image(doc: Any, k: int) -> Any:
    """`doc`'s labels, tags, OCR text and vector as image k of the corpus (its id, file name,
    owner and checksum): image k changed and analysed again."""
    return dataclasses.replace(
        doc,
        image_id=f"img-{k:08d}",
        filename=f"IMG_{k:07d}.jpg",
        owner=f"user{k % bench.OWNERS}",
        sha256=f"{k:064x}",
    )


class Timeline:
    def __init__(self) -> None:
        self.steps: list[tuple[str, float, float]] = []  # (what, start, end)
        self.late: list[tuple[float, float]] = []  # (woke at, how late)
        # (woke at, how late, {thread name: innermost frames}) for the wakes past
        # PROBE_STACKS_MS
        self.stacks: list[tuple[float, float, dict[str, str]]] = []


_NAMED = ("snapshot", "writer", "feed", "MainThread")


def _where(frame: Any, depth: int = 4) -> str:
    """The innermost `depth` frames of a stack, innermost first, as file:line function."""
    out: list[str] = []
    while frame is not None and len(out) < depth:
        code = frame.f_code
        out.append(f"{Path(code.co_filename).name}:{frame.f_lineno} {code.co_name}")
        frame = frame.f_back
    return " < ".join(out)


def _instrument(timeline: Timeline) -> Any:
    original = snap_module._write_section

    def write_section(f: Any, name: str, value: Any) -> None:
        if callable(value):
            t = time.perf_counter()
            value = value()
            timeline.steps.append((f"make {name}", t, time.perf_counter()))
        t = time.perf_counter()
        original(f, name, value)
        timeline.steps.append((f"write {name}", t, time.perf_counter()))

    snap_module._write_section = write_section
    return original


def _open(n: int) -> tuple[DurableIndex, Any, Any, list[str], bench.Corpus]:
    names, embeddings, client, server = bench._label_embeddings()
    corpus = bench.Corpus()
    if FIRST:
        work = Path(f"/tmp/snapshot-stall-probe-first-{n}")
        shutil.rmtree(work, ignore_errors=True)
        t = time.perf_counter()
        index = SearchIndex(PARAMS)
        index.attach_semantic(ConceptSpace(names, embeddings), client.embed)
        with collector_paused():
            for start in range(0, n, bench.BATCH):
                index.extend(corpus.batch(start, min(bench.BATCH, n - start)))
        durable = DurableIndex.open(
            work, PARAMS, snapshot_every=1 << 62, snapshot_interval_s=float("inf")
        )
        durable.attach_semantic(names, embeddings, client.embed)
        durable._index = index
        print(f"built {len(durable):,} documents in {time.perf_counter() - t:.0f} s", flush=True)
        durable.warm()
        queries = corpus.queries(bench.QUERIES)
        for q in queries:
            durable._index.query_embedding(q)
        return durable, client, server, queries, corpus
    work = Path(f"/tmp/snapshot-stall-probe-{n}")
    if not (work / "index.snap").exists():
        shutil.rmtree(work, ignore_errors=True)
        index = SearchIndex(PARAMS)
        index.attach_semantic(ConceptSpace(names, embeddings), client.embed)
        with collector_paused():
            for start in range(0, n, bench.BATCH):
                index.extend(corpus.batch(start, min(bench.BATCH, n - start)))
        durable = DurableIndex.open(work, PARAMS, snapshot_every=1 << 62)
        durable._index = index
        durable._unsaved = 1
        durable.close()
        corpus = bench.Corpus()
    elif os.environ.get("PROBE_SKIP_STREAM") != "1":
        for start in range(0, n, bench.BATCH):  # the same random stream as the build
            corpus.batch(start, min(bench.BATCH, n - start))
    # PROBE_SKIP_STREAM=1: the new documents (numbered from n on, as always) and the queries
    # come from a fresh stream of the same distribution instead of the build's continuation;
    # at 1M that skips minutes of making documents only to throw them away.
    t = time.perf_counter()
    durable = DurableIndex.open(
        work, PARAMS, snapshot_every=1 << 62, snapshot_interval_s=float("inf")
    )
    durable.attach_semantic(names, embeddings, client.embed)
    print(f"opened {len(durable):,} documents in {time.perf_counter() - t:.1f} s", flush=True)
    durable.warm()  # as the service does before serving (the first write's tables)
    if os.environ.get("PROBE_ANN") == "1":  # with faiss IVF, saved at every snapshot
        t = time.perf_counter()
        durable._index.vectors.build_ann()
        print(f"approximate vector index built in {time.perf_counter() - t:.0f} s", flush=True)
    queries = corpus.queries(bench.QUERIES)
    for q in queries:
        durable._index.query_embedding(q)
    return durable, client, server, queries, corpus


def _time_freeze(durable: DurableIndex, timeline: Timeline) -> None:
    """Time the parts of the frozen view (each part's frozen_state), as steps."""
    index = durable._index
    parts = {
        "freeze documents": (index._docs, "frozen_columns"),
        "freeze keywords": (index.keywords, "frozen_state"),
        "freeze vectors": (index.vectors, "frozen_state"),
        "freeze concepts": (index.concepts, "frozen_state"),
        "save the approximate vector index": (index.vectors, "save_ann"),
    }
    for what, (obj, name) in parts.items():
        if obj is None or name in vars(obj):
            continue
        method = getattr(obj, name)

        def timed(*args: Any, _m: Any = method, _w: str = what) -> Any:
            t = time.perf_counter()
            out = _m(*args)
            _CURRENT[-1].steps.append((_w, t, time.perf_counter()))
            return out

        setattr(obj, name, timed)


def round_(
    durable: DurableIndex,
    queries: list[str],
    writes: list[Any],
    mode: str,
    baseline_s: float = 0,
    feed: Feed | None = None,
    lock: str = "fair",
) -> None:
    """mode (PROBE_MODES, comma-separated, alternated by round): "as-is", or "interval" (the
    interpreter's switch interval at 1 ms instead of 5 while the snapshot is written).
    baseline_s: no snapshot, the writing, searching and sleeping threads run this long alone
    (the stalls the machine's load makes by itself, in the same run)."""
    timeline = Timeline()
    t0 = time.perf_counter()
    _CURRENT.append(timeline)
    original = _instrument(timeline)
    _time_freeze(durable, timeline)
    done = threading.Event()
    searches: list[tuple[float, float]] = []
    yields: list[int] = []  # the snapshot's pauses that waited for a search in flight
    puts: list[tuple[float, float]] = []

    def snap() -> None:
        if baseline_s:  # the same threads with no snapshot: the machine's own stalls
            done.wait(baseline_s)
            timeline.steps.append(("no snapshot", t0, time.perf_counter()))
            done.set()
            return
        durable._index.vectors.ann_saved = None  # saved again (PROBE_ANN=1)
        t = time.perf_counter()
        durable._unsaved = max(durable._unsaved, 1)
        interval = sys.getswitchinterval()
        if mode == "interval":
            sys.setswitchinterval(0.001)
        yield_max = snap_module.YIELD_MAX_S
        if mode == "noyield":  # the snapshot's pauses do not wait for searches in flight
            snap_module.YIELD_MAX_S = 0.0
        waits = snap_module.FOREGROUND.waits
        try:
            durable.snapshot()
        finally:
            sys.setswitchinterval(interval)
            snap_module.YIELD_MAX_S = yield_max
        yields.append(snap_module.FOREGROUND.waits - waits)
        timeline.steps.append(("whole snapshot", t, time.perf_counter()))
        done.set()

    def write() -> None:
        for doc in writes if PUTS else ():
            if done.is_set():
                return
            t = time.perf_counter()
            durable.put(doc)
            puts.append((t, time.perf_counter()))

    def sleeper() -> None:
        # Each other thread's CPU clock: the thread whose CPU time grew by most of a late
        # wake's wait is the one that ran meanwhile (held the interpreter lock, or ran C code
        # without it); its place is marked with a "*".
        me = threading.get_ident()
        clocks = {
            th.name: time.pthread_getcpuclockid(th.ident)
            for th in threading.enumerate()
            if th.ident is not None and th.ident != me and th.name in _NAMED
        }
        cpu = {n: time.clock_gettime(c) for n, c in clocks.items()}
        while not done.is_set():
            t = time.perf_counter()
            time.sleep(0.0005)
            woke = time.perf_counter()
            late = woke - t - 0.0005
            timeline.late.append((woke, late))
            if not STACKS_MS:
                continue
            now = {}
            for n, c in clocks.items():
                try:
                    now[n] = time.clock_gettime(c)
                except OSError:  # the thread has ended
                    now[n] = cpu[n]
            ran = {n: now[n] - cpu[n] for n in now}
            cpu = now
            if late * 1000 >= STACKS_MS:
                # The frames are let go of at once: a frame held keeps its locals alive (a
                # memoryview over a posting list would stop a put from growing it).
                names = {th.ident: th.name for th in threading.enumerate()}
                frames = sys._current_frames()
                where = {
                    names.get(k, str(k)): ("*" if ran.get(names.get(k, ""), 0) > late / 2 else "")
                    + _where(f)
                    for k, f in frames.items()
                    if k != me
                }
                del frames
                timeline.stacks.append((woke, late, where))

    workers: list[Any] = [snap, write, sleeper]
    if feed is not None:
        feed.applied = 0
        feed.replaced = 0
        workers.append(lambda: feed.run(done))
    names = ["snapshot", "writer", "sleeper", "feed"]
    threads = [threading.Thread(target=f, name=n) for f, n in zip(workers, names, strict=False)]
    cpu = time.process_time()
    for th in threads:
        if th.name != "sleeper":
            th.start()
    for th in threads:
        if th.name == "sleeper":
            th.start()
    i = 0
    # start -> the search's thread CPU time, and its time runnable but waiting for a CPU
    # (the kernel's run delay: the machine's CPUs, not a lock)
    search_cpu: dict[float, tuple[float, float]] = {}
    stat = f"/proc/self/task/{threading.get_native_id()}/schedstat"
    while not done.is_set():
        t, c, d = time.perf_counter(), time.thread_time(), _run_delay(stat)
        durable.search(queries[i % len(queries)], limit=bench.TOP)
        searches.append((t, time.perf_counter()))
        search_cpu[t] = (time.thread_time() - c, _run_delay(stat) - d)
        i += 1
    for th in threads:
        th.join()
    snap_module._write_section = original
    cpu = time.process_time() - cpu

    def longest(spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
        return sorted(spans, key=lambda s: s[0] - s[1])[:3]

    whole = timeline.steps[-1][2] - timeline.steps[-1][1]
    rates = f"; writes {len(puts) / whole:.0f}/s" + (
        f", feed applied {feed.applied / whole:.0f} changes/s" if feed is not None else ""
    )
    timed = durable._lock
    if isinstance(timed, _Timed):
        waits = sorted(timed.read_waits, reverse=True)
        holds = sorted(timed.write_holds, reverse=True)
        rates += (
            "; searches' longest waits for the lock "
            + ", ".join(f"{w * 1000:.1f}" for w in waits[:3])
            + f" ms (p99 {waits[len(waits) // 100] * 1000:.1f})" * bool(waits)
            + "; writers' longest holds "
            + ", ".join(f"{h * 1000:.1f}" for h in holds[:3])
            + " ms (holder's CPU: longest "
            + ", ".join(f"{h * 1000:.1f}" for h in sorted(timed.hold_cpu, reverse=True)[:3])
            + " ms)"
        )
        feed_holds = [
            (h, c)
            for h, c, name in zip(
                timed.write_holds, timed.hold_cpu, timed.hold_threads, strict=True
            )
            if name == "feed"
        ]
        if feed_holds:  # the feed thread's holds: a part's put_many (or a removal)
            cpus = sorted(c for _, c in feed_holds)
            walls = sorted(h for h, _ in feed_holds)
            k = len(cpus)
            rates += (
                f"; the feed's index lock holds {k}: CPU p50 {cpus[k // 2] * 1000:.1f} / p90 "
                f"{cpus[k * 9 // 10] * 1000:.1f} / mean {sum(cpus) / k * 1000:.1f} / longest "
                f"{cpus[-1] * 1000:.1f} ms, wall p50 {walls[k // 2] * 1000:.1f} / p90 "
                f"{walls[k * 9 // 10] * 1000:.1f} / longest {walls[-1] * 1000:.1f} ms"
            )
        timed.hold_threads.clear()
        timed.read_waits.clear()
        rates += _collected_in(timed.hold_spans)
        timed.write_holds.clear()
        timed.hold_spans.clear()
        timed.hold_cpu.clear()
    writers = durable._write_lock
    if isinstance(writers, _Timed):  # what a put waits for: a feed apply's part, or all of it
        rates += (
            "; writers' lock (a put waits for it) longest holds "
            + ", ".join(f"{h * 1000:.0f}" for h in sorted(writers.write_holds, reverse=True)[:3])
            + " ms, holder's CPU "
            + ", ".join(f"{h * 1000:.0f}" for h in sorted(writers.hold_cpu, reverse=True)[:3])
            + " ms"
        )
        rates += _collected_in(writers.hold_spans)
        writers.write_holds.clear()
        writers.hold_cpu.clear()
        writers.hold_threads.clear()
        writers.hold_spans.clear()
    rates += _GC.summary(t0, time.perf_counter())
    if feed is not None:
        rates += f"; feed upserts that replaced a document {feed.replaced}"
    if baseline_s:
        ms = sorted((b - a) * 1000 for a, b in searches)
        if ms:
            rates += (
                f"; searches p50 {ms[len(ms) // 2]:.0f} ms, p99 {ms[len(ms) * 99 // 100]:.0f} ms"
            )
        if timeline.late:
            mean = sum(w for _, w in timeline.late) / len(timeline.late)
            rates += f"; sleeper's mean wait {mean * 1000:.2f} ms"
        print(
            f"[{lock} lock, no snapshot] {whole:.2f} s (process CPU {cpu:.1f} s){rates}; "
            f"{len(searches)} searches, "
            "longest "
            + ", ".join(f"{(b - a) * 1000:.0f}" for a, b in longest(searches))
            + f" ms; {len(puts)} writes, longest "
            + ", ".join(f"{(b - a) * 1000:.0f}" for a, b in longest(puts))
            + " ms; sleeper's longest waits "
            + ", ".join(
                f"{w * 1000:.0f}" for _, w in sorted(timeline.late, key=lambda x: -x[1])[:5]
            )
            + f" ms; load {os.getloadavg()[0]:.1f}",
            flush=True,
        )
        return
    ms = sorted((b - a) * 1000 for a, b in searches)
    if ms:
        rates += f"; searches p50 {ms[len(ms) // 2]:.0f} ms, p99 {ms[len(ms) * 99 // 100]:.0f} ms"
    if timeline.late:  # the mean wait for the interpreter lock after a sleep (a handover)
        mean = sum(w for _, w in timeline.late) / len(timeline.late)
        rates += f"; sleeper's mean wait {mean * 1000:.2f} ms"
    if yields:
        rates += f"; pauses that waited for a search {yields[0]}"
    print(
        f"[{lock} lock, {mode}] snapshot {whole:.2f} s (process CPU {cpu:.1f} s, freeze "
        f"{durable.longest_freeze_s * 1000:.0f} ms){rates}; {len(searches)} searches, longest "
        + ", ".join(f"{(b - a) * 1000:.0f}" for a, b in longest(searches))
        + f" ms; {len(puts)} writes, longest "
        + ", ".join(f"{(b - a) * 1000:.0f}" for a, b in longest(puts))
        + " ms; sleeper's longest waits "
        + ", ".join(f"{w * 1000:.0f}" for _, w in sorted(timeline.late, key=lambda x: -x[1])[:5])
        + f" ms; load {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    start = timeline.steps[-1][1]
    for what, a, b in timeline.steps[:-1]:
        if b - a > 0.01:
            print(f"    {what:40} {(a - start) * 1000:7.0f} +{(b - a) * 1000:6.0f} ms")
    _print_stacks(timeline)
    for kind, spans in (("search", searches), ("write", puts)):
        for a, b in longest(spans):
            during = [w for w, s, e in timeline.steps[:-1] if s < b and e > a]
            waits = [w for t, w in timeline.late if a <= t <= b and w > 0.01]
            cpu_ms = (
                f" ({search_cpu[a][0] * 1000:.0f} ms CPU, {search_cpu[a][1] * 1000:.0f} ms "
                "waiting for a CPU)"
                if kind == "search"
                else ""
            )
            print(
                f"    {kind} at {(a - start) * 1000:.0f} ms took {(b - a) * 1000:.0f} ms{cpu_ms}; "
                f"sleeper waits in it {[round(w * 1000) for w in waits][:6]} ms; during "
                f"{during[:4]}"
            )


def _collected_in(spans: list[tuple[float, float, float]]) -> str:
    """The collector's passes inside the two longest holds of a lock over 50 ms (a pass in the
    holding thread keeps the lock held as long as it runs)."""
    out = ""
    for a, b, _ in sorted(spans, key=lambda s: s[0] - s[1])[:2]:
        inside = _GC.within(a, b)
        if inside and b - a > 0.05:
            ms = sum(min(e, b) - max(s, a) for s, e, *_ in inside) * 1000
            out += (
                f" (in the {(b - a) * 1000:.0f} ms hold: {len(inside)} collector passes, "
                f"{ms:.0f} ms"
                + "".join(
                    f"; gen {g} {(e - s) * 1000:.0f} ms ({c * 1000:.0f} CPU) in {t}"
                    for s, e, g, t, c in inside
                    if e - s >= 0.005
                )
                + ")"
            )
    return out


def _run_delay(path: str) -> float:
    """A thread's time runnable but not running so far (schedstat's second field), s."""
    try:
        with open(path) as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0


def _print_stacks(timeline: Timeline) -> None:
    """PROBE_STACKS_MS: the places the sleeper found each thread at after its late wakes,
    summed per place (the snapshot thread's first), the worst first."""
    if not timeline.stacks:
        return
    # A wake the other process's sleeper was at least half as late for: the machine's CPUs.
    os_late = _OS[0].late_in if _OS else (lambda a, b: 0.0)
    cpu = [os_late(woke - late, woke) >= late / 2 for woke, late, _ in timeline.stacks]
    print(
        f"    sleeper woke >= {STACKS_MS:.0f} ms late {len(timeline.stacks)} times "
        f"({sum(cpu)} of them with the sleeper process late too: the CPUs, not the lock); "
        "places at the other wakes:"
    )
    for name in ("snapshot", "writer", "MainThread", "feed"):
        sums: dict[str, list[float]] = {}
        for (_, late, where), by_cpu in zip(timeline.stacks, cpu, strict=True):
            if name in where and not by_cpu:
                sums.setdefault(where[name], []).append(late)
        for place, lates in sorted(sums.items(), key=lambda x: -sum(x[1]))[:6]:
            print(
                f"      {name:10} {len(lates):3}x, {sum(lates) * 1000:5.0f} ms in all, longest "
                f"{max(lates) * 1000:4.0f}: {place}"
            )
    print("    the longest of those wakes (* the thread that ran meanwhile):")
    others = [x for x, by_cpu in zip(timeline.stacks, cpu, strict=True) if not by_cpu]
    for _, late, where in sorted(others, key=lambda x: -x[1])[:5]:
        print(f"      {late * 1000:.0f} ms:")
        for name in _NAMED:
            if name in where:
                print(f"        {name:10} {where[name]}")


def _docs(corpus: bench.Corpus, start: int, count: int) -> list[Any]:
    out: list[Any] = []
    for at in range(start, start + count, bench.BATCH):
        out += corpus.batch(at, min(bench.BATCH, start + count - at))
    return out


def _timed(call: Any) -> tuple[Any, float, float]:
    """call()'s value, thread CPU ms and wall ms."""
    c, w = time.thread_time(), time.perf_counter()
    out = call()
    return out, (time.thread_time() - c) * 1000, (time.perf_counter() - w) * 1000


def freeze_rounds(durable: DurableIndex, corpus: bench.Corpus, n: int, rounds: int) -> None:
    """PROBE_FREEZE_ONLY=1 (see there)."""
    keywords = durable._index.keywords
    print(f"suggestion table: {len(keywords._surface):,} texts", flush=True)
    docs = _docs(corpus, n, 200 * rounds)
    passes: list[tuple[int, float]] = []  # the collector's passes: (generation, start)

    def noted(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            passes.append((info["generation"], time.perf_counter()))

    gc.callbacks.append(noted)
    walks: list[tuple[float, float]] = []  # the view's walk (_read_frozen_surface): CPU, wall
    walk = keywords._read_frozen_surface

    def timed_walk(view: Any) -> Any:
        out, c, w = _timed(lambda: walk(view))
        walks.append((c, w))
        return out

    keywords._read_frozen_surface = timed_walk  # type: ignore[method-assign]
    for r in range(rounds):
        with durable._write_lock:
            _, copy_cpu, copy_wall = _timed(lambda: dict(keywords._surface))
        with durable._write_lock:
            passes.clear()
            state, cpu, wall = _timed(keywords.frozen_state)
            collected = [g for g, _ in passes]
        for d in docs[r * 200 : (r + 1) * 200]:  # writes between the freeze and the read
            durable.put(d)
        _, list_cpu, list_wall = _timed(lambda: list(keywords._surface))
        _, read_cpu, read_wall = _timed(state["surface_text"])
        # A snapshot reads the posting lists and lengths too, which drops their records of
        # the writes since the freeze; not read here, the next freeze would drop them (0.3-0.4
        # ms after 200 puts at 1M, under the lock, not the freeze's own cost).
        keywords._held = None
        keywords._held_lengths = None
        print(
            f"  round {r + 1}: freeze under the writers' lock {cpu:.2f} ms CPU ({wall:.2f} wall"
            f"{f', collector passes of generations {collected} in it' if collected else ''}); "
            f"dict(_surface) as the freeze did before {copy_cpu:.1f} ms CPU ({copy_wall:.1f} "
            f"wall); outside the lock: list of texts {list_cpu:.1f} ms CPU ({list_wall:.1f} "
            f"wall), the whole paced read of the table {read_cpu:.0f} ms CPU ({read_wall:.0f} "
            f"wall; the view's walk {walks[-1][0]:.0f} ms CPU of it); "
            f"load {os.getloadavg()[0]:.1f}",
            flush=True,
        )
        del state
    gc.callbacks.remove(noted)
    del keywords._read_frozen_surface


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 300_000
    rounds = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    durable, client, server, queries, corpus = _open(n)
    if STACKS_MS:
        _OS.append(OsSleeper())
    if FREEZE_ONLY:
        freeze_rounds(durable, corpus, n, rounds)
        durable._unsaved = 0
        durable.close()
        client.close()
        server.stop(grace=None)
        return
    configs = [
        (lock, batch, a, prep)
        for lock in LOCKS
        for batch in APPLY_BATCHES
        for a in APPLY_MODES
        for prep in PREPARE_MODES
    ]
    extra = _docs(corpus, n, WRITES * rounds * len(configs)) if PUTS else []
    feed_images = FEED_IMAGES_PER_ROUND * rounds * len(configs) * (1 + SNAPSHOTS)
    feed_docs = _docs(corpus, n + len(extra), feed_images) if FEED else []
    feed = Feed(durable, feed_docs, n if REPUT else 0) if FEED else None
    modes = os.environ.get("PROBE_MODES", "as-is").split(",")
    if GC_FREEZE:
        tracked = len(gc.get_objects())
        c, t = time.thread_time(), time.perf_counter()
        gc.collect()
        print(
            f"a full collection over {tracked:,} tracked objects (the probe's documents "
            f"made): {(time.thread_time() - c) * 1000:.0f} ms CPU, "
            f"{(time.perf_counter() - t) * 1000:.0f} ms; frozen",
            flush=True,
        )
        gc.freeze()
    print(
        f"locks {LOCKS}, feed {'on' if FEED else 'off'}, apply batches {APPLY_BATCHES}, "
        f"puts one at a time {'on' if PUTS else 'off'}, snapshots {'on' if SNAPSHOTS else 'off'}, "
        f"feed applies {APPLY_MODES}, feed {'re-puts' if REPUT else 'new images'}, "
        f"parts prepared before the lock {PREPARE_MODES}, busy loops {BUSY}",
        flush=True,
    )
    busy = [subprocess.Popen([sys.executable, "-c", _BUSY_LOOP]) for _ in range(BUSY)]
    for r in range(rounds):
        for k, (lock, batch, apply, prep) in enumerate(configs):  # each in turn, in one run
            _use_lock(durable, lock)
            if batch is not None:
                durable_module._APPLY_BATCH = batch
                durable_module._APPLY_BATCH_SEARCHED = batch  # else min(batch, 64) if searched
            durable_module.APPLY_WHOLE = apply == "whole"
            durable_module.PREPARE_PARTS = prep == "on"
            sizes = (
                f"{durable_module._APPLY_BATCH} ({durable_module._APPLY_BATCH_SEARCHED} searched)"
            )
            print(
                f"  -- {lock} lock, apply batch {sizes}, apply {apply}, prepared {prep}",
                flush=True,
            )
            at = (r * len(configs) + k) * WRITES
            part = extra[at : at + WRITES]
            round_(durable, queries, part[: WRITES // 2], "as-is", BASELINE_S, feed, lock)
            if SNAPSHOTS:
                round_(durable, queries, part[WRITES // 2 :], modes[r % len(modes)], 0, feed, lock)
    _use_lock(durable, "fair")
    for loop in busy:
        loop.kill()
        loop.wait()
    for sleeper in _OS:
        sleeper.stop()
    durable._unsaved = 0
    durable.close()
    client.close()
    server.stop(grace=None)


if __name__ == "__main__":
    main()
