"""The bulk importer behind `imagerepo import PATH...`: uploads files and folder trees through
the gateway's REST API so that an import, however often it is interrupted or repeated, from
whichever directory or machine, never stores a photo twice.

    discover (files and folder trees; every skipped file gets a reason)
      -> sha256 of each file, a batch at a time
      -> POST /api/images/lookup: which of these bytes the library holds already (the server
         is asked, no local state file is trusted)
      -> POST /api/images for the rest, a few at a time (the storage service stores the same
         bytes once per owner, so two importers racing on one folder still store one copy)

Ctrl-C (SIGINT or SIGTERM) stops new uploads at once, waits `grace_s` for those in flight,
and the run ends with its summary and exit status 130. A gateway that cannot be reached, or
answers that its services are away (502/503/504/429), is asked again with backoff for up to
`retry_for_s` (60 s by default: long enough for a supervisor to restart a killed gateway); one
that stays away that long ends the run early with one message. A retried upload is harmless:
storage keeps one copy of the same bytes per owner, so an upload whose first attempt did land
comes back as "already in the library".
"""

from __future__ import annotations

import hashlib
import os
import queue
import stat
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

# What the gateway may accept; anything else is skipped with its reason, never sent.
IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff", ".heic", ".heif"}
)
DEFAULT_MAX_BYTES = 50 * 1024 * 1024
LOOKUP_BATCH = 500
# HTTP statuses that say "the gateway or a service behind it is away": retried, then fatal.
TRANSIENT_STATUSES = frozenset({429, 502, 503, 504})
# How long one request keeps being retried while the gateway is away (a gateway killed under
# `make run` is back in about 3 s; a container restart or an upgrade takes longer).
DEFAULT_RETRY_FOR_S = 60.0
# Waits between attempts: 0.5 s, doubling, at most this (a gateway back is noticed quickly).
RETRY_FIRST_WAIT_S = 0.5
RETRY_MAX_WAIT_S = 4.0

# Outcomes of one file.
STORED = "stored"
ALREADY = "already_stored"
REJECTED = "rejected"
FAILED = "failed"
INTERRUPTED = "interrupted"


@dataclass(frozen=True)
class Candidate:
    path: Path
    size: int


@dataclass(frozen=True)
class Skipped:
    path: str
    reason: str


@dataclass(frozen=True)
class FileOutcome:
    path: str
    result: str
    detail: str = ""
    image_id: str = ""


class GatewayUnreachableError(Exception):
    """The gateway could not be reached, or kept answering that its services are away."""


class ImportRefusedError(Exception):
    """The gateway refused the importer as a whole (a missing or wrong API key)."""


class RetryStoppedError(Exception):
    """The importer was asked to stop (Ctrl-C) while it waited for the gateway to come back."""


def discover(
    paths: Sequence[Path], max_bytes: int = DEFAULT_MAX_BYTES
) -> tuple[list[Candidate], list[Skipped]]:
    """Image files among `paths` (files, and folder trees walked in a stable order), and
    every file left out with why: not an image suffix, too large, empty, unreadable, hidden,
    not found."""
    found: list[Candidate] = []
    skipped: list[Skipped] = []
    seen: set[Path] = set()

    def consider(path: Path) -> None:
        try:
            resolved = path.resolve()
            if resolved in seen:
                return
            seen.add(resolved)
            info = path.stat()
        except OSError as exc:
            skipped.append(Skipped(str(path), f"unreadable ({exc.strerror or exc})"))
            return
        size = info.st_size
        if not stat.S_ISREG(info.st_mode):  # a pipe or a device (reading it could block)
            skipped.append(Skipped(str(path), "not a regular file"))
            return
        suffix = path.suffix.lower()
        if suffix not in IMAGE_SUFFIXES:
            what = f"extension {suffix}" if suffix else "no extension"
            skipped.append(Skipped(str(path), f"unsupported {what}"))
        elif size > max_bytes:
            skipped.append(
                Skipped(str(path), f"too large ({_mib(size)} over the {_mib(max_bytes)} limit)")
            )
        elif size == 0:
            skipped.append(Skipped(str(path), "empty file"))
        elif not os.access(path, os.R_OK):
            skipped.append(Skipped(str(path), "unreadable (permission denied)"))
        else:
            found.append(Candidate(path, size))

    for root in paths:
        if root.is_dir():
            for dirpath, dirnames, filenames in os.walk(root, onerror=_walk_error(skipped)):
                for hidden in sorted(d for d in dirnames if d.startswith(".")):
                    skipped.append(Skipped(str(Path(dirpath) / hidden), "hidden folder"))
                # os.walk does not enter a symlinked folder (it may loop or reach far): say
                # so, rather than leave its photos out without a word.
                for name in sorted(d for d in dirnames if not d.startswith(".")):
                    if os.path.islink(os.path.join(dirpath, name)):
                        skipped.append(Skipped(str(Path(dirpath) / name), _LINKED_FOLDER))
                dirnames[:] = sorted(
                    d
                    for d in dirnames
                    if not d.startswith(".") and not os.path.islink(os.path.join(dirpath, d))
                )
                for name in sorted(filenames):
                    if name.startswith("."):
                        skipped.append(Skipped(str(Path(dirpath) / name), "hidden file"))
                    else:
                        consider(Path(dirpath) / name)
        elif root.exists() or root.is_symlink():
            consider(root)
        else:
            skipped.append(Skipped(str(root), "not found"))
    return found, skipped


_LINKED_FOLDER = "symlinked folder, not followed (import it by its own path)"


def _walk_error(skipped: list[Skipped]) -> Callable[[OSError], None]:
    def record(exc: OSError) -> None:
        skipped.append(Skipped(str(exc.filename), f"unreadable folder ({exc.strerror or exc})"))

    return record


def _mib(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MiB"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def upload_name(path: Path) -> str:
    """The file's name as sent: a name on disk that is not UTF-8 (Latin-1 from an old camera,
    a Windows zip, a Samba share) cannot be sent as it is; it is read as Windows-1252, which
    gets those right ("caf\xe9.jpg" -> "café.jpg")."""
    raw = os.fsencode(path.name)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("cp1252", errors="replace")


class Gateway:
    """The two REST calls the importer makes, with their error handling."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        timeout_s: float,
        retry_for_s: float = DEFAULT_RETRY_FOR_S,
        stop: threading.Event | None = None,
        on_notice: Callable[[str], None] = lambda _message: None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._timeout_s = timeout_s
        self._retry_for_s = retry_for_s
        # Set (Ctrl-C): a request waiting for the gateway to come back gives up at once.
        self._stop = stop if stop is not None else threading.Event()
        # Told once when the gateway goes away and once when it is back (not per worker).
        self._on_notice = on_notice
        self._outage_lock = threading.Lock()
        self._away_since: float | None = None
        self._local = threading.local()

    def _session(self) -> requests.Session:
        if not hasattr(self._local, "session"):
            self._local.session = requests.Session()
        return self._local.session  # type: ignore[no-any-return]

    def lookup(self, sha256s: list[str]) -> dict[str, str]:
        """sha256 -> id of an image holding those bytes for this importer's owner."""
        try:
            reply = self._send(
                "post", "/api/images/lookup", json={"sha256": sha256s}, what="ask what is stored"
            )
            if reply.status_code != 200:
                raise GatewayUnreachableError(
                    f"the gateway could not say what it stores: {_message(reply)}"
                )
            body = reply.json()
            matches = body.get("matches") if isinstance(body, dict) else None
            if not isinstance(matches, list):
                raise ValueError("no list of matches")
        except ValueError as exc:  # not JSON (requests' JSONDecodeError), or not a lookup's
            raise self._not_a_gateway(reply) from exc
        except requests.RequestException as exc:
            raise GatewayUnreachableError(f"the gateway's answer broke off: {exc}") from exc
        found: dict[str, str] = {}
        for match in matches:
            if match.get("images"):
                found[match["sha256"]] = match["images"][0]["id"]
        return found

    def _not_a_gateway(self, reply: requests.Response) -> GatewayUnreachableError:
        kind = reply.headers.get("Content-Type", "no content type")
        return GatewayUnreachableError(
            f"{self.base_url} is not an imagerepo gateway (it answered the lookup with"
            f" HTTP {reply.status_code}, {kind}); check --url"
        )

    def upload(self, path: Path) -> FileOutcome:
        """Send one file; the gateway stores it unless its bytes are in the library already
        (then it answers with that image), so sending it again is harmless."""
        with path.open("rb") as f:
            data = f.read()
        # wait=0: answered once stored; the analysis workers catch up at their own pace.
        reply = self._send(
            "post",
            "/api/images?wait=0",
            files={"file": (upload_name(path), data)},
            what=f"upload {path}",
        )
        return _outcome_of(reply, str(path))

    def _send(self, method: str, route: str, what: str, **kwargs: Any) -> requests.Response:
        """One request, retried with backoff for up to retry_for_s while the gateway is away
        (refused or reset connections, an answer cut off, 502/503/504/429);
        GatewayUnreachableError when it stays away, ImportRefusedError when it refuses the
        importer, RetryStoppedError when the importer is stopped meanwhile."""
        deadline: float | None = None
        wait_s = RETRY_FIRST_WAIT_S
        while True:
            try:
                reply = self._session().request(
                    method,
                    self.base_url + route,
                    headers=self._headers,
                    timeout=self._timeout_s,
                    **kwargs,
                )
            except requests.ConnectionError:
                # Refused (not up yet) or reset (killed mid-request): an upload sent again is
                # harmless, its bytes are stored once per owner.
                last = f"cannot connect to {self.base_url} (is it running? `make run` starts it)"
            except requests.exceptions.ChunkedEncodingError as exc:
                # Killed mid-answer: the upload may have landed; sent again, it is found.
                last = (
                    f"the gateway's answer broke off ({exc}); a re-run checks whether it was stored"
                )
            except requests.Timeout:
                last = f"no answer from {self.base_url} within {self._timeout_s:.0f} s"
            else:
                if reply.status_code in TRANSIENT_STATUSES:
                    last = f"HTTP {reply.status_code}: {_message(reply)}"
                else:
                    self._back()
                    if reply.status_code in (401, 403):
                        raise ImportRefusedError(
                            f"the gateway refused to {what}: {_message(reply)}"
                        )
                    return reply
            now = time.monotonic()
            if deadline is None:
                deadline = now + self._retry_for_s
                self._away(last)
            if now >= deadline:
                raise GatewayUnreachableError(last)
            if self._stop.wait(min(wait_s, deadline - now)):
                raise RetryStoppedError(last)
            wait_s = min(wait_s * 2, RETRY_MAX_WAIT_S)

    def _away(self, why: str) -> None:
        with self._outage_lock:
            if self._away_since is not None or self._retry_for_s <= 0:
                return
            self._away_since = time.monotonic()
        self._on_notice(f"gateway unreachable ({why}), retrying for up to {self._retry_for_s:g} s")

    def _back(self) -> None:
        with self._outage_lock:
            if self._away_since is None:
                return
            away_s = time.monotonic() - self._away_since
            self._away_since = None
        self._on_notice(f"gateway back after {away_s:.1f} s; going on")


def _message(reply: requests.Response) -> str:
    try:
        body = reply.json()
    except ValueError:
        return reply.text[:200] or f"HTTP {reply.status_code}"
    if isinstance(body, dict):
        if body.get("results"):
            return str(body["results"][0].get("error", ""))
        if isinstance(body.get("error"), dict):
            return str(body["error"].get("message", ""))
    return reply.text[:200]


def _outcome_of(reply: requests.Response, shown: str) -> FileOutcome:
    try:
        entry = reply.json()["results"][0]
    except (ValueError, KeyError, IndexError, TypeError):
        return FileOutcome(shown, REJECTED, f"HTTP {reply.status_code}: {_message(reply)}")
    result = entry.get("result")
    if result in ("stored", "duplicate"):
        return FileOutcome(shown, STORED, "", entry["image"]["id"])
    if result == "already_stored":
        return FileOutcome(shown, ALREADY, "already in the library", entry["image"]["id"])
    return FileOutcome(shown, REJECTED, str(entry.get("error", "")))


@dataclass
class ImportSummary:
    counts: Counter[str] = field(default_factory=Counter)
    skipped: list[Skipped] = field(default_factory=list)
    outcomes: list[FileOutcome] = field(default_factory=list)
    elapsed_s: float = 0.0
    interrupted: bool = False
    # Why the run stopped early (the gateway away, the importer refused), or "".
    stopped: str = ""
    # True when the gateway refused the importer itself (a missing or wrong API key).
    refused: bool = False
    dry_run: bool = False
    would_upload: list[Candidate] = field(default_factory=list)
    # Image files never sent because the run stopped first.
    not_started: int = 0

    def add(self, outcome: FileOutcome) -> None:
        self.counts[outcome.result] += 1
        self.outcomes.append(outcome)

    @property
    def problems(self) -> list[FileOutcome]:
        return [o for o in self.outcomes if o.result in (REJECTED, FAILED, INTERRUPTED)]

    def describe(self) -> str:
        """The closing summary line."""
        if self.dry_run:
            size = sum(c.size for c in self.would_upload)
            return (
                f"dry run: would upload {len(self.would_upload)} ({_mib(size)}), "
                f"{self.counts[ALREADY]} already in the library, skipped {len(self.skipped)}"
            )
        done = sum(self.counts.values())
        rate = done / self.elapsed_s if self.elapsed_s > 0 else 0.0
        line = (
            f"stored {self.counts[STORED]}, already in the library {self.counts[ALREADY]}, "
            f"rejected {self.counts[REJECTED]}, failed {self.counts[FAILED]}, "
            f"skipped {len(self.skipped)} in {self.elapsed_s:.1f} s ({rate:.1f} files/s)"
        )
        if self.not_started:
            line += f"; {self.not_started} not started (run the same command again)"
        if self.interrupted:
            line = "interrupted: " + line
        return line

    def details(self) -> Iterator[str]:
        """One line per file that was not imported, with why."""
        for item in self.skipped:
            yield f"  skipped {item.path}: {item.reason}"
        for outcome in self.problems:
            yield f"  {outcome.result} {outcome.path}: {outcome.detail}"
        if self.dry_run:
            for candidate in self.would_upload:
                yield f"  would upload {candidate.path}"

    @property
    def exit_status(self) -> int:
        if self.interrupted:
            return 130
        if self.stopped:
            return 1 if self.refused else 3
        refused = ("unreadable", "too large", "not found")
        if self.problems or any(s.reason.startswith(refused) for s in self.skipped):
            return 1
        return 0


@dataclass
class Importer:
    gateway: Gateway
    workers: int = 4
    max_bytes: int = DEFAULT_MAX_BYTES
    dry_run: bool = False
    grace_s: float = 5.0
    # Called with the number of files to import once they are found, then after each file
    # (progress bars).
    on_start: Callable[[int], None] = lambda _n: None
    on_file: Callable[[FileOutcome], None] = lambda _o: None
    # Set it (from a signal handler) to stop: no new uploads; those in flight get grace_s.
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self, paths: Sequence[Path]) -> ImportSummary:
        started = time.perf_counter()
        summary = ImportSummary(dry_run=self.dry_run)
        candidates, summary.skipped = discover(paths, self.max_bytes)
        self.on_start(len(candidates))
        skipped_before = len(summary.skipped)
        try:
            self._import(candidates, summary)
        except GatewayUnreachableError as exc:
            summary.stopped = f"the gateway is not answering: {exc}"
        except ImportRefusedError as exc:
            summary.stopped = str(exc)
            summary.refused = True
        except RetryStoppedError:
            pass  # Ctrl-C while a lookup waited for the gateway: an interrupted run
        summary.elapsed_s = time.perf_counter() - started
        summary.interrupted = self.stop.is_set() and not summary.stopped
        unreadable_now = len(summary.skipped) - skipped_before
        summary.not_started = (
            len(candidates) - len(summary.outcomes) - len(summary.would_upload) - unreadable_now
        )
        return summary

    def _import(self, candidates: list[Candidate], summary: ImportSummary) -> None:
        jobs: queue.Queue[Candidate | None] = queue.Queue(maxsize=self.workers * 2)
        done: queue.Queue[FileOutcome | BaseException] = queue.Queue()
        in_flight: dict[str, Candidate] = {}
        lock = threading.Lock()
        fatal: list[BaseException] = []

        def worker() -> None:
            while True:
                job = jobs.get()
                if job is None or self.stop.is_set():
                    return
                with lock:
                    in_flight[str(job.path)] = job
                try:
                    outcome = self.gateway.upload(job.path)
                except requests.RequestException as exc:
                    # The connection broke once the upload was sent (requests' errors are
                    # OSErrors too, but the file is fine): the photo may have landed.
                    outcome = FileOutcome(
                        str(job.path),
                        FAILED,
                        f"the gateway's answer broke off ({exc}); a re-run checks whether"
                        " it was stored",
                    )
                except OSError as exc:
                    outcome = FileOutcome(
                        str(job.path), FAILED, f"unreadable ({exc.strerror or exc})"
                    )
                except RetryStoppedError:
                    outcome = FileOutcome(
                        str(job.path), INTERRUPTED, "stopped while the gateway was away"
                    )
                except (GatewayUnreachableError, ImportRefusedError) as exc:
                    fatal.append(exc)
                    self.stop.set()
                    outcome = FileOutcome(str(job.path), FAILED, str(exc))
                except Exception as exc:  # a worker that died would be waited for for ever
                    outcome = FileOutcome(str(job.path), FAILED, f"could not be sent: {exc!r}")
                with lock:
                    in_flight.pop(str(job.path), None)
                done.put(outcome)

        # Daemon threads: an upload still running after the grace period is abandoned (the
        # next run asks the server whether it landed).
        threads = [
            threading.Thread(target=worker, daemon=True, name=f"import-{i}")
            for i in range(0 if self.dry_run else self.workers)
        ]
        for thread in threads:
            thread.start()
        submitted = 0
        finished = 0
        seen: dict[str, str] = {}

        def collect(block_s: float) -> None:
            nonlocal finished
            try:
                item = done.get(timeout=block_s)
            except queue.Empty:
                return
            assert isinstance(item, FileOutcome)
            summary.add(item)
            self.on_file(item)
            finished += 1

        def record(outcome: FileOutcome) -> None:
            summary.add(outcome)
            self.on_file(outcome)

        try:
            for start in range(0, len(candidates), LOOKUP_BATCH):
                if self.stop.is_set():
                    break
                batch = candidates[start : start + LOOKUP_BATCH]
                digests: list[tuple[Candidate, str]] = []
                for candidate in batch:
                    if self.stop.is_set():
                        break
                    try:
                        digests.append((candidate, file_sha256(candidate.path)))
                    except OSError as exc:
                        reason = f"unreadable ({exc.strerror or exc})"
                        summary.skipped.append(Skipped(str(candidate.path), reason))
                if self.stop.is_set():
                    break
                stored = self.gateway.lookup(sorted({sha for _c, sha in digests}))
                for candidate, sha in digests:
                    shown = str(candidate.path)
                    if sha in stored:
                        record(FileOutcome(shown, ALREADY, "already in the library", stored[sha]))
                    elif sha in seen:
                        record(FileOutcome(shown, ALREADY, f"same bytes as {seen[sha]}"))
                    elif self.dry_run:
                        seen[sha] = shown
                        summary.would_upload.append(candidate)
                    else:
                        seen[sha] = shown
                        while not self.stop.is_set():
                            try:
                                jobs.put(candidate, timeout=0.1)
                                submitted += 1
                                break
                            except queue.Full:
                                collect(0.0)
                    if self.stop.is_set():
                        break
                    while finished < submitted:
                        before = finished
                        collect(0.0)
                        if finished == before:
                            break
            # Everything is queued: wait for the workers, or for a stop.
            while finished < submitted and not self.stop.is_set():
                collect(0.1)
        except BaseException:
            self.stop.set()  # the gateway went away during a lookup: no more uploads either
            raise
        finally:
            if self.stop.is_set():
                self._drain_after_stop(jobs, done, summary, in_flight, lock)
            for _thread in threads:
                jobs.put(None)  # the queue is empty now: every worker finds its end marker
        if fatal:
            raise fatal[0]

    def _drain_after_stop(
        self,
        jobs: queue.Queue[Candidate | None],
        done: queue.Queue[FileOutcome | BaseException],
        summary: ImportSummary,
        in_flight: dict[str, Candidate],
        lock: threading.Lock,
    ) -> None:
        """No new uploads: drop the queued ones, give those in flight grace_s to finish."""
        while True:
            try:
                jobs.get_nowait()
            except queue.Empty:
                break
        deadline = time.monotonic() + self.grace_s
        while time.monotonic() < deadline:
            with lock:
                busy = bool(in_flight)
            if not busy and done.empty():
                break
            try:
                item = done.get(timeout=0.05)
            except queue.Empty:
                continue
            assert isinstance(item, FileOutcome)
            summary.add(item)
            self.on_file(item)
        while not done.empty():
            item = done.get_nowait()
            assert isinstance(item, FileOutcome)
            summary.add(item)
        with lock:
            for path in in_flight:
                summary.add(FileOutcome(path, INTERRUPTED, "upload cut short; a re-run checks it"))
