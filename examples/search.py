"""Search the library by words and show why each image matched; optionally images that look
like a picture.

    python examples/search.py "cat on a sofa"
    python examples/search.py --like ~/Pictures/cat.jpg

Runs against `make run`'s default addresses (IMAGEREPO_*_ADDR to point elsewhere).
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("query", nargs="?", default="", help="words to look for")
    parser.add_argument("--like", help="a picture (path) or an image id: similar images")
    parser.add_argument("--limit", type=int, default=10)
    parser.add_argument("--owner", default="local", help="whose library (default: local)")
    args = parser.parse_args()
    if not args.query and not args.like:
        parser.error("give words to search for, or --like PICTURE")

    with imagerepo_client.ImageRepoClient(
        owner=args.owner, credentials=imagerepo_client.Credentials.from_env()
    ) as repo:
        if args.query:
            hits = repo.search(args.query, limit=args.limit)
            print(f"{len(hits)} images match {args.query!r}")
            for hit in hits:
                why = ", ".join(f"{field}:{term}" for field, term in hit.reasons[:4])
                print(f"  {hit.score:6.3f}  {hit.image.id}  {hit.image.filename}  ({why})")
        if args.like:
            similar = repo.similar(args.like, k=args.limit)
            print(f"{len(similar)} images look like {args.like}")
            for match in similar:
                print(f"  {match.similarity:6.3f}  {match.image.id}  {match.image.filename}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
