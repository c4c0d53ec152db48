"""`imagerepo import DIR` (or `python -m gateway.cli import DIR`): bulk import over the REST API;
`imagerepo reindex`: rebuild the search index from storage, with a progress bar.

Walks a folder tree for image files and uploads them through `POST /api/images` with a few
concurrent workers and a progress bar. Every finished file is appended to a state file (one
JSON line: path, size, mtime, sha256, result), so an interrupted import started again skips
what is done; a file whose content changed is uploaded again. Transient failures (the gateway
or a service unavailable) are retried and, if they persist, left out of the state file so the
next run retries them. Prints a summary of stored, duplicate and rejected files.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests
from tqdm import tqdm

IMAGE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff"})
RETRIES = 3
RETRY_STATUSES = frozenset({429, 502, 503, 504})


@dataclass(frozen=True)
class FileResult:
    path: str
    sha256: str
    # "stored", "duplicate", "rejected", or "failed" (not recorded: retried next run).
    result: str
    detail: str = ""
    image_id: str = ""


def find_images(root: Path) -> list[Path]:
    """Image files under root (by suffix), in a stable order; hidden files and folders skipped."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if not name.startswith(".") and Path(name).suffix.lower() in IMAGE_SUFFIXES:
                found.append(Path(dirpath) / name)
    return found


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class ImportState:
    """The append-only record of finished files; a torn last line (a kill mid-write) is
    ignored."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.done: dict[str, str] = {}  # relative path -> sha256
        self._lock = threading.Lock()
        if path.exists():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    entry = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if isinstance(entry, dict) and "path" in entry and "sha256" in entry:
                    self.done[entry["path"]] = entry["sha256"]

    def is_done(self, rel_path: str, sha256: str) -> bool:
        return self.done.get(rel_path) == sha256

    def record(self, result: FileResult) -> None:
        line = json.dumps(
            {
                "path": result.path,
                "sha256": result.sha256,
                "result": result.result,
                "image_id": result.image_id,
                "detail": result.detail,
            }
        )
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as f:
                f.write(line + "\n")
                f.flush()
                os.fsync(f.fileno())
            self.done[result.path] = result.sha256


class Uploader:
    def __init__(self, base_url: str, api_key: str, timeout_s: float) -> None:
        self._base = base_url.rstrip("/")
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._timeout_s = timeout_s
        self._local = threading.local()

    def _session(self) -> requests.Session:
        if not hasattr(self._local, "session"):
            self._local.session = requests.Session()
        return self._local.session  # type: ignore[no-any-return]

    def upload(self, path: Path, rel_path: str, sha256: str) -> FileResult:
        last_error = ""
        for attempt in range(RETRIES):
            if attempt:
                time.sleep(0.5 * 2**attempt)
            try:
                with path.open("rb") as f:
                    reply = self._session().post(
                        f"{self._base}/api/images",
                        files={"file": (path.name, f)},
                        headers=self._headers,
                        timeout=self._timeout_s,
                    )
            except requests.RequestException as exc:
                last_error = f"{type(exc).__name__}: {exc}"
                continue
            if reply.status_code in RETRY_STATUSES:
                last_error = f"HTTP {reply.status_code}: {_message(reply)}"
                continue
            return _result_of(reply, rel_path, sha256)
        return FileResult(rel_path, sha256, "failed", last_error)


def _message(reply: requests.Response) -> str:
    try:
        body = reply.json()
    except ValueError:
        return reply.text[:200]
    if isinstance(body, dict):
        if body.get("results"):
            return str(body["results"][0].get("error", ""))
        if isinstance(body.get("error"), dict):
            return str(body["error"].get("message", ""))
    return reply.text[:200]


def _result_of(reply: requests.Response, rel_path: str, sha256: str) -> FileResult:
    if reply.status_code in (401, 403):
        raise PermissionError(f"the gateway refused the upload: {_message(reply)}")
    try:
        body: Any = reply.json()
        entry = body["results"][0]
    except (ValueError, KeyError, IndexError, TypeError):
        return FileResult(
            rel_path, sha256, "rejected", f"HTTP {reply.status_code}: {_message(reply)}"
        )
    if entry.get("result") in ("stored", "duplicate"):
        return FileResult(rel_path, sha256, entry["result"], "", entry["image"]["id"])
    return FileResult(rel_path, sha256, "rejected", str(entry.get("error", "")))


@dataclass
class ImportSummary:
    counts: Counter[str]
    skipped: int
    elapsed_s: float
    failures: list[FileResult]

    def describe(self) -> str:
        done = sum(self.counts.values())
        rate = done / self.elapsed_s if self.elapsed_s > 0 else 0.0
        return (
            f"stored {self.counts['stored']}, duplicate {self.counts['duplicate']}, "
            f"rejected {self.counts['rejected']}, failed {self.counts['failed']}"
            f" (skipped {self.skipped} already imported) in {self.elapsed_s:.1f} s"
            f" ({rate:.1f} files/s)"
        )


def run_import(
    root: Path,
    base_url: str,
    state_path: Path,
    api_key: str = "",
    workers: int = 4,
    timeout_s: float = 120.0,
    progress: bool = True,
) -> ImportSummary:
    started = time.perf_counter()
    state = ImportState(state_path)
    uploader = Uploader(base_url, api_key, timeout_s)
    paths = find_images(root)
    counts: Counter[str] = Counter()
    failures: list[FileResult] = []
    skipped = 0

    def todo() -> Iterator[tuple[Path, str, str]]:
        nonlocal skipped
        for path in paths:
            rel_path = path.relative_to(root).as_posix()
            sha256 = file_sha256(path)
            if state.is_done(rel_path, sha256):
                skipped += 1
                bar.update(1)
                continue
            yield path, rel_path, sha256

    with (
        tqdm(total=len(paths), unit="file", disable=not progress, desc="import") as bar,
        ThreadPoolExecutor(max_workers=workers) as pool,
    ):
        futures = [pool.submit(uploader.upload, *job) for job in todo()]
        for future in as_completed(futures):
            result = future.result()
            counts[result.result] += 1
            if result.result == "failed":
                failures.append(result)
            else:
                state.record(result)
            bar.update(1)
            bar.set_postfix(
                stored=counts["stored"], dup=counts["duplicate"], rej=counts["rejected"]
            )
    return ImportSummary(counts, skipped, time.perf_counter() - started, failures)


def run_reindex(
    base_url: str, api_key: str = "", progress: bool = True, poll_s: float = 0.5
) -> dict[str, Any]:
    """Start a rebuild of the search index from storage and follow it to the end."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    url = f"{base_url.rstrip('/')}/api/index/rebuild"
    reply = requests.post(url, headers=headers, timeout=30)
    if reply.status_code not in (202, 409):  # 409: one is running already; follow that one
        raise RuntimeError(_error_message(reply))
    with tqdm(unit="image", disable=not progress, desc="reindex") as bar:
        while True:
            status = requests.get(url, timeout=30).json()
            bar.total = status["total"] or None
            bar.update(status["streamed"] - bar.n)
            if status["state"] != "running":
                return dict(status)
            time.sleep(poll_s)


def _error_message(reply: requests.Response) -> str:
    try:
        return str(reply.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return f"HTTP {reply.status_code}"


def default_state_path(root: Path) -> Path:
    digest = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:12]
    return Path.cwd() / f".imagerepo-import-{digest}.jsonl"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="imagerepo", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    imp = commands.add_parser("import", help="upload every image under a folder")
    imp.add_argument("directory", type=Path)
    imp.add_argument("--workers", type=int, default=4, help="concurrent uploads (default 4)")
    imp.add_argument("--state", type=Path, help="state file for resuming (default: in cwd)")
    reindex = commands.add_parser("reindex", help="rebuild the search index from storage")
    for command in (imp, reindex):
        command.add_argument(
            "--url",
            default=os.environ.get("IMAGEREPO_URL", "http://127.0.0.1:8080"),
            help="gateway",
        )
        command.add_argument(
            "--api-key",
            default=os.environ.get("IMAGEREPO_API_KEY", ""),
            help="sent as a Bearer token (default: $IMAGEREPO_API_KEY)",
        )
        command.add_argument("--no-progress", action="store_true")
    args = parser.parse_args(argv)
    if args.command == "reindex":
        return _reindex_command(args)

    root: Path = args.directory
    if not root.is_dir():
        print(f"imagerepo: {root} is not a folder", file=sys.stderr)
        return 2
    state_path = args.state or default_state_path(root)
    try:
        summary = run_import(
            root,
            args.url,
            state_path,
            api_key=args.api_key,
            workers=max(1, args.workers),
            progress=not args.no_progress,
        )
    except PermissionError as exc:
        print(f"imagerepo: {exc}", file=sys.stderr)
        return 1
    print(summary.describe())
    for failure in summary.failures[:10]:
        print(f"  failed: {failure.path}: {failure.detail}", file=sys.stderr)
    print(f"state: {state_path}")
    return 1 if summary.failures else 0


def _reindex_command(args: argparse.Namespace) -> int:
    try:
        status = run_reindex(args.url, args.api_key, progress=not args.no_progress)
    except (RuntimeError, requests.RequestException) as exc:
        print(f"imagerepo: reindex not started: {exc}", file=sys.stderr)
        return 1
    if status["state"] != "done":
        print(f"imagerepo: reindex failed: {status['error']}", file=sys.stderr)
        return 1
    print(f"reindexed {status['indexed']} images in {status['elapsed_s']:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
