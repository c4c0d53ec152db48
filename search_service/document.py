"""What search knows of one image, independent of gRPC (the servicer translates protos)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any

import numpy as np
import numpy.typing as npt


class Status(IntEnum):
    """Mirrors imagerepo.common.v1.AnalysisStatus (same numbers)."""

    UNSPECIFIED = 0
    PENDING = 1
    READY = 2
    FAILED = 3


@dataclass(frozen=True)
class Label:
    name: str
    probability: float
    synonyms: tuple[str, ...] = ()
    class_index: int = -1


@dataclass(frozen=True)
class Document:
    image_id: str
    filename: str = ""
    owner: str = ""
    labels: tuple[Label, ...] = ()
    tags: tuple[str, ...] = ()
    ocr_text: str = ""
    moderation_score: float = 0.0
    status: Status = Status.READY
    # L2-normalised image features (1280-d); None when the image was not analysed.
    feature_vector: npt.NDArray[np.float32] | None = field(default=None, compare=False)
    sha256: str = ""
    created_at_unix_ms: int = 0
    # From EXIF (exif.py): when the photo was taken (camera clock read as UTC; 0 = unknown),
    # and the camera.
    taken_at_unix_s: int = 0
    camera_make: str = ""
    camera_model: str = ""
    # Dominant named colours from analysis: (name, share of the image 0..1), largest first.
    colours: tuple[tuple[str, float], ...] = ()
    # Starred by its owner (storage's ImageMetadata.favourite).
    favourite: bool = False

    def to_json(self) -> dict[str, Any]:
        """A JSON-ready dict without the feature vector (vectors are stored as one array)."""
        return {
            "id": self.image_id,
            "fn": self.filename,
            "ow": self.owner,
            "lb": [
                [lb.name, lb.probability, list(lb.synonyms), lb.class_index] for lb in self.labels
            ],
            "tg": list(self.tags),
            "oc": self.ocr_text,
            "ms": self.moderation_score,
            "st": int(self.status),
            "sh": self.sha256,
            "ct": self.created_at_unix_ms,
            "ta": self.taken_at_unix_s,
            "cm": self.camera_make,
            "cd": self.camera_model,
            "co": [[name, share] for name, share in self.colours],
            "fv": self.favourite,
        }

    @classmethod
    def from_json(
        cls, data: dict[str, Any], vector: npt.NDArray[np.float32] | None = None
    ) -> Document:
        return cls(
            image_id=data["id"],
            filename=data["fn"],
            owner=data["ow"],
            labels=tuple(Label(n, p, tuple(s), c) for n, p, s, c in data["lb"]),
            tags=tuple(data["tg"]),
            ocr_text=data["oc"],
            moderation_score=data["ms"],
            status=Status(data["st"]),
            feature_vector=vector,
            sha256=data["sh"],
            created_at_unix_ms=data["ct"],
            taken_at_unix_s=data.get("ta", 0),
            camera_make=data.get("cm", ""),
            camera_model=data.get("cd", ""),
            colours=tuple((n, float(s)) for n, s in data.get("co", ())),
            favourite=bool(data.get("fv", False)),
        )
