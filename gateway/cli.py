"""The `imagerepo` command (also `python -m gateway.cli`): `import` uploads photos through the
gateway's REST API without ever storing one twice (gateway.importer); `verify` checks every
block storage holds (gateway.integrity). (There is no `reindex`: search follows storage's change
feed, so a lost index is rebuilt by replaying the feed when search starts.)"""

from __future__ import annotations

import argparse
import math
import os
import signal
import sys
import textwrap
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from service_runtime.ports import Ports

# requests, tqdm and the importer are imported inside the functions: the command starts (and
# takes its Ctrl-C handler) before their import time, so an early Ctrl-C ends it quietly too.
if TYPE_CHECKING:
    from gateway.importer import ImportSummary

DEFAULT_URL = "http://127.0.0.1:8080"

_IMPORT_DESCRIPTION = textwrap.dedent(
    """\
    Upload image files, and every image file under folders, through the gateway.

    Before sending anything the importer asks the gateway which of the files it already
    holds (by sha256, in batches), so an interrupted or repeated import, started from any
    directory or machine, never stores a photo twice; two importers on the same folder at
    once do not either. No local state file is kept. Hidden files and folders are
    skipped, and so is every file without an image extension, over --max-size, empty or
    unreadable, each listed with its reason; a symlinked folder is listed, not followed.
    Image extensions: {suffixes}.

    Ctrl-C stops new uploads at once, waits up to --grace seconds for the ones in flight,
    prints the summary and exits with status 130; run the same command again to finish.
    A gateway that cannot be reached, or answers that its services are away, is asked
    again with backoff for up to --retry-for seconds (a gateway restarting is ridden
    through; a photo whose upload is retried is still stored once); one that stays away
    that long stops the run early with one message.
    """
)

IMPORT_EPILOG = textwrap.dedent(
    """\
    exit status:
      0    every image file is in the library (stored now or before)
      1    some files were refused (not an image, too large, unreadable) or failed, or
           the gateway refused the importer (a missing or wrong API key)
      2    bad arguments
      3    the gateway could not be reached or stopped answering for --retry-for seconds
           (nothing more was sent)
      130  interrupted (Ctrl-C or SIGTERM)

    examples:
      imagerepo import ~/Pictures
      imagerepo import holiday/ best-of.jpg --workers 8
      imagerepo import ~/Pictures --dry-run
      IMAGEREPO_API_KEY=alice:secret imagerepo import photos --url http://nas:8080
    """
)


def main(argv: list[str] | None = None) -> int:
    stop = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        if stop.is_set():  # a second Ctrl-C: leave now
            os._exit(130)
        stop.set()
        print(
            "\nimagerepo: stopping: no new uploads; waiting briefly for those in flight"
            " (Ctrl-C again to leave now)",
            file=sys.stderr,
        )

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        args = build_parser().parse_args(argv)
        if args.command == "verify":
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            from gateway.integrity import verify_command

            return verify_command(args)
        return _import_command(args, stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def default_gateway_url(env: Mapping[str, str] = os.environ) -> str:
    """Where `make run`'s gateway listens: GATEWAY_PORT or IMAGEREPO_BASE_PORT on loopback,
    else DEFAULT_URL (also when those settings cannot be read)."""
    try:
        port = Ports.from_env(env).ports["gateway"]
    except ValueError:
        return DEFAULT_URL
    return f"http://127.0.0.1:{port}"


def build_parser() -> argparse.ArgumentParser:
    from gateway.importer import DEFAULT_MAX_BYTES, DEFAULT_RETRY_FOR_S, IMAGE_SUFFIXES

    parser = argparse.ArgumentParser(
        prog="imagerepo",
        description="Command-line tools of imagerepo, a self-hosted image repository.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    imp = commands.add_parser(
        "import",
        help="upload files and folder trees, never storing a photo twice",
        description=_IMPORT_DESCRIPTION.format(suffixes=" ".join(sorted(IMAGE_SUFFIXES))),
        epilog=IMPORT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    imp.add_argument(
        "paths",
        nargs="+",
        type=Path,
        metavar="PATH",
        help="image files and folders to import (folders are walked recursively)",
    )
    imp.add_argument(
        "--workers",
        type=_positive_int,
        default=4,
        help="uploads running at once (default: 4)",
    )
    imp.add_argument(
        "--dry-run",
        action="store_true",
        help="find the files and ask the gateway which it already holds, list what would be"
        " uploaded and skipped, and upload nothing",
    )
    imp.add_argument(
        "--max-size",
        type=_size,
        default=DEFAULT_MAX_BYTES,
        metavar="BYTES",
        help="skip files larger than this, e.g. 20M or 1G (default: 50M, the gateway's"
        " default limit)",
    )
    imp.add_argument(
        "--grace",
        type=_seconds(allow_zero=True),
        default=5.0,
        metavar="SECONDS",
        help="after Ctrl-C, how long to wait for uploads in flight (default: 5)",
    )
    imp.add_argument(
        "--timeout",
        type=_seconds(allow_zero=False),
        default=120.0,
        metavar="SECONDS",
        help="deadline of each HTTP request (default: 120)",
    )
    imp.add_argument(
        "--retry-for",
        type=_seconds(allow_zero=True),
        default=DEFAULT_RETRY_FOR_S,
        metavar="SECONDS",
        help="while the gateway is unreachable (or answers 502/503/504/429), keep retrying"
        f" each request for this long before giving up; 0 gives up at once"
        f" (default: {DEFAULT_RETRY_FOR_S:g})",
    )
    for command in (imp,):
        command.add_argument(
            "--url",
            type=_gateway_url,
            default=os.environ.get("IMAGEREPO_URL") or default_gateway_url(),
            help="the gateway (default: $IMAGEREPO_URL, else the port $GATEWAY_PORT or"
            f" $IMAGEREPO_BASE_PORT give, as `make run` uses them, else {DEFAULT_URL})",
        )
        command.add_argument(
            "--api-key",
            default=os.environ.get("IMAGEREPO_API_KEY", ""),
            help="sent as 'Authorization: Bearer KEY'; needed when the gateway has API keys"
            " set, and decides whose library the files go to (default: $IMAGEREPO_API_KEY)",
        )
        command.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    from gateway.integrity import add_verify_parser

    add_verify_parser(commands)
    return parser


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def _seconds(allow_zero: bool) -> Callable[[str], float]:
    """A duration argument: a finite number of seconds, above 0 (or 0 too when allowed);
    requests would otherwise fail on the first upload with a traceback."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
        if not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
            least = "0 or more" if allow_zero else "more than 0"
            raise argparse.ArgumentTypeError(f"must be a number of seconds, {least}: {text!r}")
        return value

    return parse


def _gateway_url(text: str) -> str:
    """The gateway's base URL; a bare `host:port` (as people type it) means http://."""
    url = text.strip()
    if "://" not in url:
        url = "http://" + url
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(
            f"not a gateway URL: {text!r} (e.g. http://127.0.0.1:8080)"
        )
    return url


def _size(text: str) -> int:
    units = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3}
    number, unit = text.strip().upper().rstrip("B"), ""
    if number and number[-1] in units:
        number, unit = number[:-1], number[-1]
    try:
        return int(float(number) * units[unit])
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 20M)") from None


def run_import(
    paths: Path | list[Path],
    base_url: str,
    api_key: str = "",
    workers: int = 4,
    timeout_s: float = 120.0,
    progress: bool = True,
) -> ImportSummary:
    """Import files and folders from Python (benchmarks, scripts): the command without its
    signal handling and printing."""
    from tqdm import tqdm

    from gateway.importer import Gateway, Importer

    importer = Importer(Gateway(base_url, api_key, timeout_s), workers=workers)
    with tqdm(unit="file", desc="import", disable=not progress) as bar:
        importer.on_start = lambda total: setattr(bar, "total", total)
        importer.on_file = lambda _outcome: bar.update(1)
        return importer.run(paths if isinstance(paths, list) else [paths])


def _import_command(args: argparse.Namespace, stop: threading.Event) -> int:
    from tqdm import tqdm

    from gateway.importer import Gateway, Importer

    def notice(message: str) -> None:
        tqdm.write(f"imagerepo: {message}", file=sys.stderr)

    importer = Importer(
        Gateway(
            args.url,
            args.api_key,
            args.timeout,
            retry_for_s=args.retry_for,
            stop=stop,
            on_notice=notice,
        ),
        workers=args.workers,
        max_bytes=args.max_size,
        dry_run=args.dry_run,
        grace_s=args.grace,
        stop=stop,
    )
    bars: list[tqdm] = []  # made once the files are counted, so it starts with its total

    def started(total: int) -> None:
        bars.append(tqdm(total=total, unit="file", desc="import", disable=quiet))

    quiet = args.no_progress or args.dry_run
    importer.on_start = started
    importer.on_file = lambda _outcome: bars[0].update(1)
    try:
        summary = importer.run(args.paths)
    finally:
        for bar in bars:
            bar.close()
    _report(summary)
    return summary.exit_status


def _report(summary: ImportSummary) -> None:
    for line in summary.details():
        print(line)
    if summary.stopped:
        print(f"imagerepo: stopped early: {summary.stopped}", file=sys.stderr)
    print(summary.describe())


if __name__ == "__main__":
    sys.exit(main())
