"""Duplicate groups: exact (same sha256) and near (feature cosine at or above a threshold).

Exact copies count once among near duplicates: near groups are built over one representative
per sha256, so a photo uploaded twice and its resized copy make one exact group and one near
group of two representatives, never a near group restating the exact one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from search_service.vector_index import VectorIndex

# Below this many representatives pairs are compared exactly in blocks; above, each one asks
# the vector index for its nearest neighbours.
_EXACT_PAIRS_LIMIT = 20_000
_BLOCK = 2048
_NEIGHBOURS = 16
# Candidates the approximate index passes on to be rescored per representative: a near
# duplicate (cosine 0.9+) is far closer than anything else, so a few suffice.
_CANDIDATES = 4 * _NEIGHBOURS


@dataclass(frozen=True)
class DuplicateGroup:
    docs: tuple[int, ...]
    sha256: str = ""
    min_similarity: float = 1.0


def exact_groups(shas: Sequence[tuple[int, str]]) -> list[DuplicateGroup]:
    """Groups of documents (docno, sha256) sharing a non-empty sha256, biggest first."""
    by_sha: dict[str, list[int]] = {}
    for docno, sha in shas:
        if sha:
            by_sha.setdefault(sha, []).append(docno)
    groups = [DuplicateGroup(tuple(d), sha) for sha, d in by_sha.items() if len(d) > 1]
    return sorted(groups, key=lambda g: (-len(g.docs), g.docs))


def near_groups(
    representatives: npt.NDArray[np.int64],
    vectors: VectorIndex,
    threshold: float,
    exact_pairs_limit: int = _EXACT_PAIRS_LIMIT,
) -> list[DuplicateGroup]:
    """Connected groups of representatives whose vectors are at least `threshold` alike."""
    reps = np.asarray(representatives, np.int64)
    parent = {int(d): int(d) for d in reps}

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in _close_pairs(reps, vectors, threshold, exact_pairs_limit):
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    members: dict[int, list[int]] = {}
    for d in reps:
        members.setdefault(find(int(d)), []).append(int(d))
    groups = []
    for docs in members.values():
        if len(docs) < 2:
            continue
        docs.sort()
        member_vectors = vectors.vectors_of(np.asarray(docs, np.int64))
        sims = member_vectors[1:] @ member_vectors[0]
        groups.append(DuplicateGroup(tuple(docs), "", min(1.0, float(sims.min()))))
    return sorted(groups, key=lambda g: (-len(g.docs), g.docs))


def _close_pairs(
    reps: npt.NDArray[np.int64], vectors: VectorIndex, threshold: float, exact_pairs_limit: int
) -> list[tuple[int, int]]:
    pairs: list[tuple[int, int]] = []
    rep_vectors = vectors.vectors_of(reps)
    if reps.size <= exact_pairs_limit or not vectors.approximate:
        for start in range(0, reps.size, _BLOCK):
            block = rep_vectors[start : start + _BLOCK] @ rep_vectors.T
            rows, cols = np.nonzero(block >= threshold)
            for r, c in zip(rows + start, cols, strict=True):
                if r < c:
                    pairs.append((int(reps[r]), int(reps[c])))
        return pairs
    allowed = np.zeros(int(reps.max()) + 1, np.bool_)
    allowed[reps] = True
    for d, v in zip(reps, rep_vectors, strict=True):
        hits = vectors.search(v, _NEIGHBOURS, allowed, candidates=_CANDIDATES)
        for other, sim in zip(hits.docs, hits.similarities, strict=True):
            if other != d and sim >= threshold:
                pairs.append((int(d), int(other)))
    return pairs
