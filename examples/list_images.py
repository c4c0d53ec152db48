"""List the library, newest first, a page at a time.

    python examples/list_images.py --page-size 50

Runs against `make run`'s default addresses (IMAGEREPO_STORAGE_ADDR to point elsewhere).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

try:
    import imagerepo_client
except ModuleNotFoundError:  # run from a checkout without `pip install ./clients/python`
    sys.path.append(str(Path(__file__).resolve().parents[1] / "clients" / "python"))
    import imagerepo_client

STATUS = {0: "?", 1: "pending", 2: "ready", 3: "failed"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--page-size", type=int, default=100)
    parser.add_argument("--owner", default="local", help="whose library (default: local)")
    args = parser.parse_args()

    with imagerepo_client.ImageRepoClient(
        owner=args.owner, credentials=imagerepo_client.Credentials.from_env()
    ) as repo:
        shown = 0
        for number, page in enumerate(repo.pages(page_size=args.page_size), start=1):
            print(f"page {number} ({len(page.images)} of {page.total_count} images)")
            for image in page.images:
                labels = ", ".join(label.name for label in image.labels[:2])
                print(
                    f"  {image.id}  {image.filename:<30} {image.width}x{image.height}"
                    f"  {STATUS.get(image.status, '?'):<7}  {labels}"
                )
                shown += 1
    print(f"{shown} images")
    return 0


if __name__ == "__main__":
    sys.exit(main())
