"""The 1000 label-name embeddings semantic expansion needs, computed once and cached on disk.

Cache file (SEARCH_DATA_DIR/label_embeddings.npz): `names` (unicode array, class-index order),
`embeddings` float32 [n_labels, dim], `model` (the embedding model's name). It is reused while
the vision service reports the same labels; written atomically like every other file here.
"""

from __future__ import annotations

import logging
import os
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt

from search_service.semantic import label_prompts
from search_service.snapshot import fsync_dir

log = logging.getLogger(__name__)

CACHE_NAME = "label_embeddings.npz"
_BATCH = 64


def load_cached(data_dir: Path) -> tuple[list[str], npt.NDArray[np.float32]] | None:
    path = data_dir / CACHE_NAME
    if not path.exists():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            names = [str(n) for n in data["names"]]
            embeddings = np.asarray(data["embeddings"], np.float32)
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        # A damaged cache (a .npz is a zip: cut short, it has no central directory; a flipped
        # byte fails its CRC) is recomputed; it must never keep search from starting.
        log.warning("label embedding cache unreadable, recomputing", extra={"reason": str(exc)})
        return None
    if len(names) != len(embeddings) or not names:
        return None
    return names, embeddings


def compute_and_cache(
    data_dir: Path | None,
    names: list[str],
    embed: Callable[[list[str]], npt.NDArray[np.float32]],
) -> npt.NDArray[np.float32]:
    """Embed "a photo of a {name}" for every label, in batches, and cache the result."""
    prompts = label_prompts(names)
    parts = []
    for start in range(0, len(prompts), _BATCH):
        parts.append(embed(prompts[start : start + _BATCH]))
        if start % (_BATCH * 4) == 0:
            log.info("embedding label names", extra={"done": start, "total": len(prompts)})
    embeddings = np.concatenate(parts).astype(np.float32)
    if data_dir is not None:
        data_dir.mkdir(parents=True, exist_ok=True)
        tmp = data_dir / (CACHE_NAME + ".tmp")
        with tmp.open("wb") as f:
            np.savez(f, names=np.asarray(names, dtype=str), embeddings=embeddings)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(data_dir / CACHE_NAME)
        fsync_dir(data_dir)
    return embeddings
