"""How a feature vector is kept in the `feature_vector` blob column: float16, read back as float32.

    value = b""                                    no vector
          | b"\\x16" | float16 LE x n               since issue 13 (1 + 2n bytes: odd, so
                                                    never a multiple of 4)
          | float32 LE x n                         before issue 13, and still written for a
                                                    vector float16 cannot hold (4n bytes)

The two encodings are told apart by length (odd against a multiple of 4) and the float16
one's header byte, so segments and logs written before this change read as they always did,
and compaction copies values as they are.

Why float16 (measured by `make bench PART=ingest` on 240 vectors of real photos from the vision
service's EfficientNet-Lite0): recall@10 of the float16 copies against float32 is 1.000, and a
vector takes 1.6 KB after the segment's zstd instead of 3.2 KB. int8 with a per-vector scale
would take 0.65 KB at recall 0.999, but it changes every value (0.25 reads back as 0.2519), while
float16 returns exactly what was put for values it can hold (the tests', and anything already
float16); callers that compare vectors take float32 lists from `decode` either way.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

FLOAT16_HEADER = b"\x16"
# The largest finite float16; a vector with a larger value is kept as float32.
FLOAT16_MAX = float(np.finfo(np.float16).max)


class VectorFormatError(ValueError):
    """A stored value that is neither encoding (its length or header is wrong)."""


def encode(vector: Sequence[float] | npt.NDArray[np.floating] | None) -> bytes:
    """The bytes stored for `vector` (b"" for none): float16 when every value fits, else
    float32."""
    if vector is None or len(vector) == 0:
        return b""
    values = np.asarray(vector, dtype="<f4")
    if np.all(np.abs(values) <= FLOAT16_MAX):
        return FLOAT16_HEADER + values.astype("<f2").tobytes()
    return values.tobytes()


def decode(stored: bytes) -> npt.NDArray[np.float32]:
    """The vector `stored` holds, as float32 (empty for b"")."""
    if len(stored) % 4 == 0:
        return np.frombuffer(stored, dtype="<f4").astype(np.float32)
    if len(stored) % 2 == 1 and stored[:1] == FLOAT16_HEADER:
        return np.frombuffer(stored, dtype="<f2", offset=1).astype(np.float32)
    raise VectorFormatError(f"a stored feature vector of {len(stored)} bytes has no known encoding")


def decode_list(stored: bytes) -> list[float]:
    """`decode` as the Python floats storage's API returns."""
    return decode(stored).tolist()
