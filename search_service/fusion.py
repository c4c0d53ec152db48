"""Reciprocal rank fusion: one ranking from several, robust to their incomparable scores."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

RRF_K = 60


def reciprocal_rank_fusion(
    rankings: Sequence[npt.NDArray[np.int64]],
    weights: Sequence[float] | None = None,
    k: int = RRF_K,
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Documents of every ranking (each best first), fused best first, with fused scores.

    score(d) = sum over rankings r holding d of weight_r / (k + rank_r(d)), rank from 1. Ties
    keep the order of the first ranking that holds the documents.
    """
    weights = weights or [1.0] * len(rankings)
    nonempty = [(r, w) for r, w in zip(rankings, weights, strict=True) if r.size]
    if not nonempty:
        return np.zeros(0, np.int64), np.zeros(0, np.float64)
    if len(nonempty) == 1:  # nothing to fuse: keep the ranking, score it the same way
        ranking, weight = nonempty[0]
        return ranking, weight / (k + np.arange(1, ranking.size + 1, dtype=np.float64))
    docs = np.unique(np.concatenate([r for r, _ in nonempty]))
    scores = np.zeros(docs.size, np.float64)
    first_seen = np.full(docs.size, np.iinfo(np.int64).max, np.int64)
    offset = 0
    for ranking, weight in zip(rankings, weights, strict=True):
        if ranking.size == 0:
            continue
        at = np.searchsorted(docs, ranking)
        scores[at] += weight / (k + np.arange(1, ranking.size + 1))
        first_seen[at] = np.minimum(first_seen[at], offset + np.arange(ranking.size))
        offset += ranking.size
    order = np.lexsort((first_seen, -scores))
    return docs[order], scores[order]
