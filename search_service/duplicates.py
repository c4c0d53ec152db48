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
    representatives: npt.NDArray[np.int64], vectors: VectorIndex, threshold: float
) -> list[DuplicateGroup]:
    """Connected groups of representatives whose vectors are at least `threshold` alike."""
    reps = np.asarray(representatives, np.int64)
    parent = {int(d): int(d) for d in reps}

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in _close_pairs(reps, vectors, threshold):
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    members: dict[int, list[int]] = {}
    for d in reps:
        members.setdefault(find(int(d)), []).append(int(d))
    matrix = vectors.matrix()
    groups = []
    for docs in members.values():
        if len(docs) < 2:
            continue
        docs.sort()
        sims = matrix[docs[1:]] @ matrix[docs[0]]
        groups.append(DuplicateGroup(tuple(docs), "", float(sims.min())))
    return sorted(groups, key=lambda g: (-len(g.docs), g.docs))


def _close_pairs(
    reps: npt.NDArray[np.int64], vectors: VectorIndex, threshold: float
) -> list[tuple[int, int]]:
    matrix = vectors.matrix()
    pairs: list[tuple[int, int]] = []
    if reps.size <= _EXACT_PAIRS_LIMIT or not vectors.approximate:
        rep_vectors = matrix[reps]
        for start in range(0, reps.size, _BLOCK):
            block = rep_vectors[start : start + _BLOCK] @ rep_vectors.T
            rows, cols = np.nonzero(block >= threshold)
            for r, c in zip(rows + start, cols, strict=True):
                if r < c:
                    pairs.append((int(reps[r]), int(reps[c])))
        return pairs
    allowed = np.zeros(matrix.shape[0], np.bool_)
    allowed[reps] = True
    for d in reps:
        hits = vectors.search(matrix[d], _NEIGHBOURS, allowed)
        for other, sim in zip(hits.docs, hits.similarities, strict=True):
            if other != d and sim >= threshold:
                pairs.append((int(d), int(other)))
    return pairs
