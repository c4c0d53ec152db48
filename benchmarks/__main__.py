"""`python -m benchmarks [PART ...]`: run the storage, vision, search and e2e benchmarks.

Each part is a module `benchmarks.<part>_bench` with a `main() -> None` that prints its figures
and the ratios against its baseline. With no argument every part runs, in order.
"""

from __future__ import annotations

import importlib
import sys
import time

PARTS = ("storage", "vision", "search", "e2e", "ingest", "scale")


def main(argv: list[str]) -> int:
    parts = argv or list(PARTS)
    unknown = [p for p in parts if p not in PARTS]
    if unknown:
        print(f"unknown part(s) {unknown}; choose from {PARTS}", file=sys.stderr)
        return 2
    for part in parts:
        print(f"\n=== {part} benchmark ===", flush=True)
        started = time.perf_counter()
        importlib.import_module(f"benchmarks.{part}_bench").main()
        print(f"=== {part}: {time.perf_counter() - started:.1f} s ===", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
