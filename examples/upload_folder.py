"""Upload every photo in a folder over gRPC, never storing one twice.

    python examples/upload_folder.py ~/Pictures/holiday --tag holiday

Asks storage which of the files it holds already (FindBySha256, one call for the lot), then
uploads the others in 1 MiB chunks. Runs against `make run`'s default addresses; set
IMAGEREPO_STORAGE_ADDR / _SEARCH_ADDR / _VISION_ADDR to point elsewhere.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
from pathlib import Path

try:
    import imagerepo_client
except ModuleNotFoundError:  # run from a checkout without `pip install ./clients/python`
    sys.path.append(str(Path(__file__).resolve().parents[1] / "clients" / "python"))
    import imagerepo_client

SUFFIXES = {".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff", ".heic", ".heif"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--tag", action="append", default=[], help="tag every new upload")
    parser.add_argument("--owner", default="local", help="whose library (default: local)")
    args = parser.parse_args()

    files = sorted(p for p in args.folder.rglob("*") if p.suffix.lower() in SUFFIXES)
    digests = {p: hashlib.sha256(p.read_bytes()).hexdigest() for p in files}
    with imagerepo_client.ImageRepoClient(
        owner=args.owner, credentials=imagerepo_client.Credentials.from_env()
    ) as repo:
        stored = repo.find_by_sha256(digests.values())
        failed = 0
        for path in files:
            known = stored.get(digests[path])
            if known is not None:
                print(f"already in your library  {known.id}  {path}")
                continue
            try:
                result = repo.upload(path, tags=args.tag)
            except imagerepo_client.InvalidArgumentError as exc:
                print(f"refused                  {exc.details}  {path}")
                failed += 1
                continue
            word = "already in your library" if result.already_stored else "stored"
            print(f"{word:<24} {result.image.id}  {path}")
            stored[digests[path]] = result.image
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
