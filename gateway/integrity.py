"""Storage integrity as people see it: `imagerepo verify` (a scrub of every stored block, with a
progress bar) and the summary the status page shows (unreadable images, a latched background
error, the last verify and the images it found damaged).

`imagerepo verify` speaks gRPC to the storage service directly (StorageService.Verify streams
progress, then its report): a scrub reads every byte on disk, which is an operator's tool, not
a REST call.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any

import grpc

from imagerepo.storage.v2 import storage_service_pb2 as storage_pb
from imagerepo.storage.v2 import storage_service_pb2_grpc as storage_grpc
from service_runtime.channels import open_channel
from service_runtime.ports import Ports
from service_runtime.security import SecurityConfigError, TransportSecurity

DEFAULT_STORAGE_ADDRESS = "127.0.0.1:50051"
# Exit statuses of `imagerepo verify`.
EXIT_OK, EXIT_DAMAGED, EXIT_UNREACHABLE, EXIT_INTERRUPTED = 0, 1, 3, 130


def _when(unix_ms: int) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(unix_ms / 1000))


def report_json(report: storage_pb.VerifyReport) -> dict[str, Any]:
    return {
        "ok": report.ok,
        "finished_at_unix_ms": report.finish_time.ToMilliseconds(),
        "finished_at": _when(report.finish_time.ToMilliseconds()),
        "files_checked": report.files_checked,
        "blocks_checked": report.blocks_checked,
        "bytes_checked": report.bytes_checked,
        "damaged": [
            {"path": d.path, "detail": d.detail, "image_ids": list(d.image_ids)}
            for d in report.damaged
        ],
        "damaged_image_ids": list(report.damaged_image_ids),
    }


def integrity_summary(stats: storage_pb.GetStatsResponse) -> dict[str, Any]:
    """What the status page shows about the store's health, from storage's GetStats."""
    return {
        "unreadable_count": stats.unreadable_count,
        "background_error": stats.background_error,
        "storage_full": stats.storage_full,
        "quarantined_files": stats.quarantined_files,
        "damaged_log_records": stats.damaged_log_records,
        "last_verify": report_json(stats.last_verify) if stats.HasField("last_verify") else None,
    }


def verify_storage(
    address: str,
    on_progress: Callable[[storage_pb.VerifyProgress], None] | None = None,
    timeout_s: float | None = None,
    security: TransportSecurity | None = None,
) -> storage_pb.VerifyReport:
    """Run a verify on the storage service at `address` (with the services' TLS and token
    when `security` has them) and return its report; grpc.RpcError when storage cannot be
    reached or the verify fails."""
    with open_channel(address, security=security) as channel:
        stub = storage_grpc.StorageServiceStub(channel)
        for message in stub.Verify(storage_pb.VerifyRequest(), timeout=timeout_s):
            if message.HasField("report"):
                return message.report
            if on_progress is not None:
                on_progress(message.progress)
    raise RuntimeError("storage ended the verify without a report")


def describe(report: storage_pb.VerifyReport) -> list[str]:
    """The report as lines for a terminal."""
    checked = (
        f"{report.files_checked} files, {report.blocks_checked} blocks, "
        f"{report.bytes_checked / 1e6:.1f} MB checked"
    )
    if report.ok:
        return [f"verify: no damage found ({checked})"]
    lines = [
        f"verify: DAMAGE FOUND in {len(report.damaged)} place(s), "
        f"{len(report.damaged_image_ids)} image(s) affected ({checked})"
    ]
    for item in report.damaged:
        ids = f" images: {', '.join(item.image_ids)}" if item.image_ids else ""
        lines.append(f"  {item.path}: {item.detail}{ids}")
    lines.append(
        "Damaged images answer DATA_LOSS and are never served wrong; restore them from a "
        "backup, or delete them. See docs/storage.md."
    )
    return lines


def default_storage_address(env: Mapping[str, str] = os.environ) -> str:
    """Where `make run`'s storage listens, as the gateway dials it: GATEWAY_STORAGE_ADDR, else
    STORAGE_PORT or IMAGEREPO_BASE_PORT + 1 on loopback, else 127.0.0.1:50051 (also when those
    settings cannot be read: the verify then names the address it could not reach)."""
    try:
        return Ports.from_env(env).addresses(env)["GATEWAY_STORAGE_ADDR"]
    except ValueError:
        return env.get("GATEWAY_STORAGE_ADDR") or DEFAULT_STORAGE_ADDRESS


def add_verify_parser(commands: Any) -> argparse.ArgumentParser:
    parser: argparse.ArgumentParser = commands.add_parser(
        "verify",
        help="check every block storage holds against its checksum (a scrub)",
        description=(
            "Ask the storage service to read every segment block, the MANIFEST and the log\n"
            "and check each against its checksum, with a progress bar. Prints what is\n"
            "damaged and the image ids affected; the status page shows the last result.\n"
            "Uses the services' TLS and token files when IMAGEREPO_TLS_* and\n"
            "IMAGEREPO_SERVICE_TOKEN_FILE are set."
        ),
        epilog=(
            "exit status:\n  0    no damage\n  1    damage found (listed)\n"
            "  3    storage could not be reached, or the verify failed\n  130  interrupted"
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--storage",
        default=default_storage_address(),
        metavar="HOST:PORT",
        help="the storage service's gRPC address (default: $GATEWAY_STORAGE_ADDR, else the port"
        " $STORAGE_PORT or $IMAGEREPO_BASE_PORT + 1 give, as `make run` uses them, else "
        f"{DEFAULT_STORAGE_ADDRESS})",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar on stderr")
    return parser


def verify_command(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    try:
        # The same TLS and service-token files the services use (IMAGEREPO_TLS_*, ...).
        security = TransportSecurity.from_env()
    except (SecurityConfigError, OSError) as exc:
        print(f"imagerepo: verify not started: {exc}", file=sys.stderr)
        return EXIT_UNREACHABLE

    with tqdm(
        unit="B", unit_scale=True, desc="verify", disable=args.no_progress, file=sys.stderr
    ) as bar:

        def on_progress(progress: storage_pb.VerifyProgress) -> None:
            if progress.bytes_total:
                bar.total = progress.bytes_total
            bar.update(progress.bytes_checked - bar.n)

        try:
            report = verify_storage(args.storage, on_progress, security=security)
        except grpc.RpcError as exc:
            bar.close()
            code = exc.code()  # type: ignore[attr-defined]
            if code == grpc.StatusCode.UNAVAILABLE:
                message = f"storage at {args.storage} cannot be reached"
            else:
                message = f"{code.name}: {exc.details()}"  # type: ignore[attr-defined]
            print(f"imagerepo: verify failed: {message}", file=sys.stderr)
            return EXIT_UNREACHABLE
        except KeyboardInterrupt:
            bar.close()
            print("imagerepo: verify interrupted", file=sys.stderr)
            return EXIT_INTERRUPTED
        if report.bytes_checked:
            bar.total = max(bar.total or 0, report.bytes_checked)
            bar.update(report.bytes_checked - bar.n)
    for line in describe(report):
        print(line)
    return EXIT_OK if report.ok else EXIT_DAMAGED
