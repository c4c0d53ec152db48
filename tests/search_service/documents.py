"""Small builders of search documents for the domain tests (plain data, no gRPC)."""

from __future__ import annotations

import numpy as np

from search_service.document import Document, Label, Status

DIM = 16


def unit(seed: int, dim: int = DIM) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=dim).astype(np.float32)
    return v / np.linalg.norm(v)


def doc(
    image_id: str,
    labels: tuple[tuple[str, float], ...] = (),
    *,
    filename: str = "",
    owner: str = "alice",
    tags: tuple[str, ...] = (),
    ocr_text: str = "",
    moderation: float = 0.0,
    status: Status = Status.READY,
    vector: np.ndarray | None = None,
    sha256: str = "",
    class_indexes: dict[str, int] | None = None,
) -> Document:
    classes = class_indexes or {}
    return Document(
        image_id=image_id,
        filename=filename or f"{image_id}.jpg",
        owner=owner,
        labels=tuple(Label(name, p, (), classes.get(name, -1)) for name, p in labels),
        tags=tags,
        ocr_text=ocr_text,
        moderation_score=moderation,
        status=status,
        feature_vector=vector,
        sha256=sha256,
    )
