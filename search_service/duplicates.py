"""Duplicate groups: exact (same sha256) and near (feature cosine at or above a threshold).

Exact copies count once among near duplicates: near groups are built over one representative
per sha256, so a photo uploaded twice and its resized copy make one exact group and one near
group of two representatives, never a near group restating the exact one.

A featureless image, one whose vector is as alike to a plain one-colour image's as
FEATURELESS_SIMILARITY (`plain_vectors.json`, built by `build_plain_vectors.py` with the real
model), is in no near group: the model sees nothing in it, so two of them are alike without
being copies. MATE's transparent wallpapers are white drawings in the alpha channel; on white
(vision's preprocess) seven distinct ones were blank pages, one near group at cosine 0.971, and
"Keep one" would have trashed six. Exact copies of such an image are still grouped by sha256.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path

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
PLAIN_VECTORS = Path(__file__).with_name("plain_vectors.json")
# Cosine to the nearest plain image at or above which an image is featureless. Measured on the
# int8 vectors as stored (tests/search_service/test_near_duplicates_real.py): MATE's seven
# transparent wallpapers and their variants 0.899-1.0; wallpapers and photos with content at
# most 0.609 (the MATE set, tuned on) and 0.543 (Lomiri wallpapers, scikit-image and
# scikit-learn photos, held out).
FEATURELESS_SIMILARITY = 0.8


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


@cache
def plain_vectors(path: Path = PLAIN_VECTORS) -> npt.NDArray[np.float32]:
    """Unit feature vectors of plain one-colour images, one a row."""
    table = json.loads(path.read_text(encoding="utf-8"))
    rows = np.frombuffer(base64.b64decode(table["int8"]), np.int8).astype(np.float32)
    rows = rows.reshape(table["shape"])
    rows /= np.linalg.norm(rows, axis=1, keepdims=True)
    return rows


def with_features(
    reps: npt.NDArray[np.int64], vectors: VectorIndex, plain: npt.NDArray[np.float32]
) -> npt.NDArray[np.int64]:
    """The representatives that are not featureless (all when `plain` is another model's)."""
    if not plain.size or plain.shape[1:] != (vectors.dim,) or not reps.size:
        return reps
    keep = np.ones(reps.size, np.bool_)
    for start in range(0, reps.size, _BLOCK):
        block = vectors.vectors_of(reps[start : start + _BLOCK]) @ plain.T
        keep[start : start + _BLOCK] = block.max(axis=1) < FEATURELESS_SIMILARITY
    return reps[keep]


def near_groups(
    representatives: npt.NDArray[np.int64],
    vectors: VectorIndex,
    threshold: float,
    exact_pairs_limit: int = _EXACT_PAIRS_LIMIT,
    plain: npt.NDArray[np.float32] | None = None,
) -> list[DuplicateGroup]:
    """Connected groups of representatives whose vectors are at least `threshold` alike,
    featureless ones (alike to one of the `plain` vectors; default the committed ones) left
    out."""
    reps = np.asarray(representatives, np.int64)
    reps = with_features(reps, vectors, plain_vectors() if plain is None else plain)
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
