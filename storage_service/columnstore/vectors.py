"""How a feature vector is kept in the `feature_vector` blob column, read back as float32.

    value = b""                                    no vector
          | b"\\x08" | float32 LE max | int8 x n     added later in issue 13; the default
                                                    (STORAGE_VECTOR_ENCODING=int8), for an even
                                                    n (every model vector: 1280); 5 + n bytes,
                                                    odd, so never a multiple of 4
          | b"\\x16" | float16 LE x n               since issue 13 (1 + 2n bytes: odd, so
                                                    never a multiple of 4); written with
                                                    STORAGE_VECTOR_ENCODING=float16, and for an
                                                    odd n under int8
          | float32 LE x n                         before issue 13 (4n bytes); written with
                                                    STORAGE_VECTOR_ENCODING=float32, and for a
                                                    vector float16 cannot hold

The encodings are told apart by length (odd against a multiple of 4) and the odd ones by their
header byte, so segments and logs written before read as they always did, and compaction copies
values as they are (a store's setting decides only what new writes use).

int8 is symmetric with one scale per vector: q = round(v * 127 / max|v|), read back as
q * max / 127 (computed in float64, then float32), so the largest value and a constant vector
read back exactly and writing a read vector again gives the same bytes. A vector of zeros keeps
max 0.

Why int8 by default (measured on 160 vectors of real photos from the vision service's
EfficientNet-Lite0, 20 scikit-image/scikit-learn photos x 8 crops; recall as in test_vectors.py,
bytes as a store of them keeps its feature_vector column after flush and compaction):

    encoding   recall@10 against float32   bytes a vector: written   in the segment (zstd)
    float32    1.000                       5120                      3173
    float16    1.000                       2561                      1614
    int8       0.995                       1285                       661

On 300 web-sized photos (72 KB on average) with these vectors, the store takes 1.091x the raw
image bytes with int8 against 1.104x with float16 (the goal is at most 1.10x); float16 keeps
every value float16 can hold exactly. Callers that compare vectors take float32 lists from
`decode` either way. A value that is not finite is refused (the storage policy refuses it
before it gets here, see policy.check_feature_vector).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

INT8_HEADER = b"\x08"
FLOAT16_HEADER = b"\x16"
# The largest finite float16; a vector with a larger value is kept as float32.
FLOAT16_MAX = float(np.finfo(np.float16).max)
ENCODINGS = ("int8", "float16", "float32")
DEFAULT_ENCODING = "int8"


class VectorFormatError(ValueError):
    """A stored value that is no known encoding (its length or header is wrong)."""


class VectorEncodingError(ValueError):
    """An encoding name that is not one of ENCODINGS (a bad STORAGE_VECTOR_ENCODING)."""


def check_encoding(encoding: str) -> str:
    """`encoding` if it is one of ENCODINGS, else VectorEncodingError."""
    if encoding not in ENCODINGS:
        raise VectorEncodingError(
            f"unknown feature vector encoding {encoding!r} (STORAGE_VECTOR_ENCODING): "
            f"use {', '.join(ENCODINGS[:-1])} or {ENCODINGS[-1]}"
        )
    return encoding


def encode(
    vector: Sequence[float] | npt.NDArray[np.floating] | None, encoding: str = DEFAULT_ENCODING
) -> bytes:
    """The bytes stored for `vector` (b"" for none) in `encoding`: int8 for an even number of
    values, else float16; float16 when every value fits, else float32; float32."""
    check_encoding(encoding)
    if vector is None or len(vector) == 0:
        return b""
    values = np.asarray(vector, dtype="<f4")
    if not np.all(np.isfinite(values)):
        raise ValueError("a feature vector holds NaN or infinite values (or is beyond float32)")
    if encoding == "int8" and len(values) % 2 == 0:
        top = np.float32(np.max(np.abs(values)))
        q = np.round(values.astype(np.float64) * 127 / top) if top else np.zeros(len(values))
        return (
            INT8_HEADER + top.astype("<f4").tobytes() + np.clip(q, -127, 127).astype("i1").tobytes()
        )
    if encoding != "float32" and np.all(np.abs(values) <= FLOAT16_MAX):
        return FLOAT16_HEADER + values.astype("<f2").tobytes()
    return values.tobytes()


def decode(stored: bytes) -> npt.NDArray[np.float32]:
    """The vector `stored` holds, as float32 (empty for b"")."""
    if len(stored) % 4 == 0:
        return np.frombuffer(stored, dtype="<f4").astype(np.float32)
    if len(stored) % 2 == 1 and stored[:1] == FLOAT16_HEADER:
        return np.frombuffer(stored, dtype="<f2", offset=1).astype(np.float32)
    if len(stored) % 2 == 1 and len(stored) >= 7 and stored[:1] == INT8_HEADER:
        top = float(np.frombuffer(stored, dtype="<f4", count=1, offset=1)[0])
        q = np.frombuffer(stored, dtype="i1", offset=5).astype(np.float64)
        return (q * top / 127).astype(np.float32)
    raise VectorFormatError(f"a stored feature vector of {len(stored)} bytes has no known encoding")


def decode_list(stored: bytes) -> list[float]:
    """`decode` as the Python floats storage's API returns."""
    return decode(stored).tolist()
