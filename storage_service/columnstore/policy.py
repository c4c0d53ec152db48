"""What imagerepo accepts: image formats, sizes, pixels, vectors, tags, labels, text, filenames.

One policy, owned by storage (which applies it to every write) and imported by the gateway
(quick refusals before an upload is sent) and by vision (what it decodes and what it returns),
so the three never disagree. Pure functions and constants: no gRPC, no I/O.

A refusal is a `PolicyError` (annotations, filenames) or an `ImageRefusedError` (the bytes):
both carry a `reason` a client can branch on (the google.rpc ErrorInfo reason storage sends)
and a short message naming the limit.

Limits, and why:
- formats: what Pillow decodes here (HEIC/HEIF through pillow-heif, registered on import).
- bytes: 50 MiB per image by default (storage and gateway config may lower it).
- pixels: an image is refused when decoding it would need more memory than the decode budget
  (`decode_cost`); JPEG decodes at a reduced scale (libjpeg draft mode), so a large photo
  costs what its thumbnails need, while a PNG always costs its full size.
- a reply must fit gRPC's default 4 MiB message limit: every per-image field is bounded so
  one image's metadata stays well under 1 MiB, and paged replies are cut to `MAX_REPLY_BYTES`.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Iterable, Sequence

from storage_service.columnstore.errors import InvalidImageError, InvalidRequestError

# --- errors -----------------------------------------------------------------------------------

# ErrorInfo reasons (see protos/imagerepo/storage/v1/storage_service.proto).
IMAGE_TOO_LARGE = "IMAGE_TOO_LARGE"
UNSUPPORTED_FORMAT = "UNSUPPORTED_FORMAT"
INVALID_IMAGE = "INVALID_IMAGE"
POLICY_VIOLATION = "POLICY_VIOLATION"


class PolicyError(InvalidRequestError):
    """A filename or annotation outside the policy; `limit` names the rule broken."""

    def __init__(self, message: str, *, limit: str = "", reason: str = POLICY_VIOLATION) -> None:
        super().__init__(message)
        self.reason = reason
        self.limit = limit


class ImageRefusedError(InvalidImageError):
    """Image bytes outside the policy (format, size, pixels) or unreadable."""

    def __init__(self, message: str, *, reason: str = INVALID_IMAGE, limit: str = "") -> None:
        super().__init__(message)
        self.reason = reason
        self.limit = limit


# --- formats ----------------------------------------------------------------------------------

# Pillow format name -> the content type stored and served. MPO is a phone's multi-picture JPEG.
ACCEPTED_FORMATS: dict[str, str] = {
    "JPEG": "image/jpeg",
    "MPO": "image/jpeg",
    "PNG": "image/png",
    "WEBP": "image/webp",
    "GIF": "image/gif",
    "TIFF": "image/tiff",
    "BMP": "image/bmp",
    "HEIF": "image/heif",
    "AVIF": "image/avif",
}
ACCEPTED_FORMAT_NAMES = "JPEG, PNG, WebP, GIF, TIFF, BMP, HEIC/HEIF or AVIF"

# ISO-BMFF brands (the `ftyp` box) of HEIF and AVIF files.
_HEIF_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"})
_AVIF_BRANDS = frozenset({b"avif", b"avis"})
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"BM", "image/bmp"),
    (b"II*\x00", "image/tiff"),
    (b"MM\x00*", "image/tiff"),
)


def register_openers() -> None:
    """Teach Pillow HEIC/HEIF (pillow-heif); AVIF is built into Pillow. Idempotent."""
    try:
        import pillow_heif
    except ImportError:  # pragma: no cover - a dependency; without it HEIF is refused by name
        return
    pillow_heif.register_heif_opener()


register_openers()


def sniff_content_type(data: bytes) -> str | None:
    """The content type of an accepted format the bytes start with (magic numbers), or None."""
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if len(data) >= 12 and data[4:8] == b"ftyp":
        brand = data[8:12]
        if brand in _AVIF_BRANDS:
            return "image/avif"
        if brand in _HEIF_BRANDS:
            return "image/heif"
        return None
    for signature, content_type in _SIGNATURES:
        if data.startswith(signature):
            return content_type
    return None


def check_format(format_name: str) -> str:
    """The content type to store for a decoded format, or ImageRefusedError naming it."""
    content_type = ACCEPTED_FORMATS.get(format_name.upper())
    if content_type is None:
        raise ImageRefusedError(
            f"the {format_name or 'unknown'} format is not accepted "
            f"(accepted: {ACCEPTED_FORMAT_NAMES})",
            reason=UNSUPPORTED_FORMAT,
            limit="format",
        )
    return content_type


# --- size, pixels and decode memory ---------------------------------------------------------

DEFAULT_MAX_IMAGE_BYTES = 50 * 1024 * 1024
# Header check before any decoding: no accepted image may claim more pixels than this.
DEFAULT_MAX_PIXELS = 100_000_000
# Memory that decoding uploads (for checks and thumbnails) may use at once, all requests
# together. One image whose decode would need more is refused; several large ones take turns.
DEFAULT_DECODE_MEMORY_BYTES = 192 * 1024 * 1024
# The longest side a decode has to produce: the PREVIEW thumbnail's size.
DECODE_TARGET_SIDE = 1024

# Peak bytes per decoded pixel while checking and thumbnailing, by Pillow mode: the decoded
# image plus any full-size conversion the resize needs (Pillow stores RGB in 4 bytes; RGBA and
# LA are premultiplied into a second full copy before resampling; palette images are expanded
# to RGB(A) first; 1-bit images to L).
_BYTES_PER_PIXEL: dict[str, int] = {
    "1": 2,
    "L": 1,
    "P": 9,
    "I;16": 2,
    "I;16L": 2,
    "I;16B": 2,
    "I;16N": 2,
    "LA": 8,
    "La": 4,
    "PA": 9,
    "RGBA": 8,
    "RGBa": 4,
}
_DEFAULT_BYTES_PER_PIXEL = 4  # RGB, RGBX, CMYK, YCbCr, LAB, HSV, I, F
# Decoders that hold their own full-size buffers beside Pillow's image (measured on 20 Mpx
# photos: WebP ~15 bytes per pixel in all, as Pillow's decoder keeps a canvas and a copy of
# the frame; HEIF ~8; AVIF ~9.5).
_CODEC_BUFFER_BYTES_PER_PIXEL = {"WEBP": 12, "HEIF": 5, "AVIF": 6}


def bytes_per_pixel(mode: str, format_name: str = "") -> int:
    return _BYTES_PER_PIXEL.get(mode, _DEFAULT_BYTES_PER_PIXEL) + (
        _CODEC_BUFFER_BYTES_PER_PIXEL.get(format_name.upper(), 0)
    )


def decode_cost(size: tuple[int, int], mode: str, format_name: str = "") -> int:
    """Peak bytes needed to decode and thumbnail an image of `size` (after any reduced-scale
    decoding) in `mode`."""
    return size[0] * size[1] * bytes_per_pixel(mode, format_name)


def max_pixels_for(memory_bytes: int, mode: str = "RGB", format_name: str = "") -> int:
    """The pixel limit that a decode memory budget sets for images of one mode."""
    return memory_bytes // bytes_per_pixel(mode, format_name)


def check_byte_size(size: int, max_bytes: int) -> None:
    if size > max_bytes:
        raise ImageRefusedError(
            f"the image is {size} bytes, over the limit of {max_bytes} bytes",
            reason=IMAGE_TOO_LARGE,
            limit="max_image_bytes",
        )


def check_pixels(width: int, height: int, max_pixels: int) -> None:
    pixels = width * height
    if pixels <= 0:
        raise ImageRefusedError("the image has no pixels")
    if pixels > max_pixels:
        raise ImageRefusedError(
            f"decompression bomb refused: {width}x{height} is {pixels} pixels, over the "
            f"limit of {max_pixels}",
            reason=IMAGE_TOO_LARGE,
            limit="max_image_pixels",
        )


def check_decode_cost(size: tuple[int, int], mode: str, format_name: str, memory_bytes: int) -> int:
    """The decode cost, or ImageRefusedError when one decode would exceed the budget."""
    cost = decode_cost(size, mode, format_name)
    if cost > memory_bytes:
        limit = max_pixels_for(memory_bytes, mode, format_name)
        raise ImageRefusedError(
            f"decompression bomb refused: {size[0]}x{size[1]} {mode} pixels would need "
            f"{cost // 2**20} MiB to decode, over the {memory_bytes // 2**20} MiB decode "
            f"budget ({limit} pixels in this mode)",
            reason=IMAGE_TOO_LARGE,
            limit="decode_memory_bytes",
        )
    return cost


def draft_size(size: tuple[int, int], target_side: int = DECODE_TARGET_SIDE) -> tuple[int, int]:
    """The smallest size, same aspect, whose long side reaches `target_side` (JPEG draft mode
    then picks the largest DCT reduction, 1/2 to 1/8, that stays at or above it)."""
    w, h = size
    scale = min(1.0, target_side / max(w, h))
    return (max(1, math.ceil(w * scale)), max(1, math.ceil(h * scale)))


# --- filenames --------------------------------------------------------------------------------

MAX_FILENAME_BYTES = 255
# Format characters allowed in names: the joiners emoji sequences are made of.
_ALLOWED_FORMAT_CHARS = frozenset({"\u200c", "\u200d"})


def normalize_filename(raw: str) -> str:
    """NFC, surrounding whitespace removed: how a name is stored and looked up (a name typed on
    a Mac arrives decomposed, `e` + accent; it must find the same image)."""
    return unicodedata.normalize("NFC", raw).strip()


def clean_filename(raw: str | None) -> str:
    """The normalised filename to store, or PolicyError naming the rule it breaks.

    One path component of printable text, at most 255 UTF-8 bytes; any script is fine
    (`fleur été 🌸.jpg`, `ракета.jpg`). Control characters (NUL, CR, LF, tab, ...), direction
    overrides and other invisible format characters, path separators, `..` and `<`/`>` are
    refused rather than silently rewritten, so the uploader knows what was stored.
    """
    name = normalize_filename(raw or "")
    if not name:
        raise PolicyError("the file has no filename", limit="filename")
    size = len(name.encode("utf-8", errors="surrogatepass"))
    if size > MAX_FILENAME_BYTES:
        raise PolicyError(
            f"the filename is {size} bytes, over the limit of {MAX_FILENAME_BYTES} bytes",
            limit="filename_bytes",
        )
    for ch in name:
        category = unicodedata.category(ch)
        if category in ("Cc", "Cs") or (category == "Cf" and ch not in _ALLOWED_FORMAT_CHARS):
            raise PolicyError(
                f"the filename holds a control character (U+{ord(ch):04X})", limit="filename"
            )
    if any(ch in "<>" for ch in name):
        raise PolicyError(
            "the filename holds '<' or '>', which filenames here may not use", limit="filename"
        )
    if "/" in name or "\\" in name or name in {".", ".."}:
        raise PolicyError(
            f"the filename {name[:64]!r} holds a path; send the file's name only, without folders",
            limit="filename",
        )
    return name


def check_lookup_filename(raw: str) -> str:
    """A filename to look up: normalised like a stored one; refused only when empty or over
    the byte limit (no stored name can be longer)."""
    name = normalize_filename(raw)
    if not name:
        raise PolicyError("filename is required", limit="filename")
    size = len(name.encode("utf-8", errors="surrogatepass"))
    if size > MAX_FILENAME_BYTES:
        raise PolicyError(
            f"the filename is {size} bytes, over the limit of {MAX_FILENAME_BYTES} bytes",
            limit="filename_bytes",
        )
    return name


# --- annotations ------------------------------------------------------------------------------

# The image model's embedding (EfficientNet-Lite0's pooled features, vision's FEATURE_DIM).
FEATURE_DIM = 1280
MAX_TAGS_PER_IMAGE = 200
MAX_TAG_CHARS = 64
MAX_LABELS = 50
MAX_LABEL_BYTES = 256
MAX_SYNONYMS = 16
MAX_OCR_TEXT_BYTES = 64 * 1024
MAX_STATUS_DETAIL_CHARS = 1000
MAX_FEEDBACK_PER_IMAGE = 100
MAX_FEEDBACK_COMMENT_BYTES = 2048
MAX_FEEDBACK_FIELD_BYTES = 256
# Replies are kept under gRPC's default 4 MiB receive limit, with room for framing.
MAX_REPLY_BYTES = 3 * 1024 * 1024 + 512 * 1024
# The largest page or batch a caller may ask for.
MAX_BATCH = 1000


def _utf8_len(text: str) -> int:
    return len(text.encode("utf-8", errors="surrogatepass"))


def _check_text(text: str, what: str, max_bytes: int, *, allow_newlines: bool = False) -> None:
    size = _utf8_len(text)
    if size > max_bytes:
        raise PolicyError(
            f"{what} is {size} bytes, over the limit of {max_bytes} bytes", limit=what
        )
    for ch in text:
        if unicodedata.category(ch) in ("Cc", "Cs") and not (allow_newlines and ch in "\n\t"):
            raise PolicyError(f"{what} holds a control character (U+{ord(ch):04X})", limit=what)


def check_feature_vector(vector: Sequence[float]) -> None:
    """Empty (no vector) or exactly FEATURE_DIM finite values."""
    if not vector:
        return
    if len(vector) != FEATURE_DIM:
        raise PolicyError(
            f"feature_vector has {len(vector)} values; the image model's has {FEATURE_DIM}",
            limit="feature_dim",
        )
    if not all(math.isfinite(v) for v in vector):
        raise PolicyError("feature_vector holds NaN or infinite values", limit="finite")


def check_tag(tag: str) -> None:
    if not tag.strip():
        raise PolicyError("a tag is empty", limit="tag")
    if len(tag) > MAX_TAG_CHARS:
        raise PolicyError(
            f"a tag is {len(tag)} characters, over the limit of {MAX_TAG_CHARS}",
            limit="tag_chars",
        )
    _check_text(tag, "tag", MAX_TAG_CHARS * 4)


def check_tags(tags: Iterable[str], what: str = "tags") -> None:
    items = list(tags)
    if len(items) > MAX_TAGS_PER_IMAGE:
        raise PolicyError(
            f"{what} has {len(items)} tags, over the limit of {MAX_TAGS_PER_IMAGE} per image",
            limit="tag_count",
        )
    for tag in items:
        check_tag(tag)


def check_tag_count(count: int) -> None:
    if count > MAX_TAGS_PER_IMAGE:
        raise PolicyError(
            f"the image would have {count} tags, over the limit of {MAX_TAGS_PER_IMAGE}",
            limit="tag_count",
        )


def check_label(name: str, probability: float, synonyms: Sequence[str]) -> None:
    if not name:
        raise PolicyError("a label has no name", limit="label")
    _check_text(name, "label name", MAX_LABEL_BYTES)
    if not (math.isfinite(probability) and 0.0 <= probability <= 1.0):
        raise PolicyError(
            f"label {name[:64]!r} has probability {probability}, outside 0..1", limit="label"
        )
    if len(synonyms) > MAX_SYNONYMS:
        raise PolicyError(
            f"label {name[:64]!r} has {len(synonyms)} synonyms, over the limit of {MAX_SYNONYMS}",
            limit="synonyms",
        )
    for synonym in synonyms:
        _check_text(synonym, "label synonym", MAX_LABEL_BYTES)


def check_label_count(count: int) -> None:
    if count > MAX_LABELS:
        raise PolicyError(
            f"{count} labels, over the limit of {MAX_LABELS} per image", limit="label_count"
        )


# The 11 basic colour words analysis names dominant colours with.
COLOUR_NAMES = frozenset(
    [
        "red",
        "orange",
        "yellow",
        "green",
        "blue",
        "purple",
        "pink",
        "brown",
        "black",
        "white",
        "grey",
    ]
)


def check_colours(colours: Iterable[tuple[str, float]]) -> None:
    """Dominant colours: known names, each once, share in 0..1, at most 11."""
    items = list(colours)
    if len(items) > len(COLOUR_NAMES):
        raise PolicyError(
            f"{len(items)} colours, over the limit of {len(COLOUR_NAMES)}", limit="colours"
        )
    seen: set[str] = set()
    for name, share in items:
        if name not in COLOUR_NAMES:
            raise PolicyError(
                f"unknown colour {name[:32]!r}; known: {', '.join(sorted(COLOUR_NAMES))}",
                limit="colours",
            )
        if name in seen:
            raise PolicyError(f"colour {name!r} given twice", limit="colours")
        seen.add(name)
        if not (math.isfinite(share) and 0.0 <= share <= 1.0):
            raise PolicyError(f"colour {name!r} has share {share}, outside 0..1", limit="colours")


def check_moderation_score(score: float) -> None:
    if not (math.isfinite(score) and 0.0 <= score <= 1.0):
        raise PolicyError(f"moderation_score {score} is outside 0..1", limit="moderation_score")


def check_ocr_text(text: str) -> None:
    _check_text(text, "ocr_text", MAX_OCR_TEXT_BYTES, allow_newlines=True)


def clip_ocr_text(text: str) -> str:
    """OCR output cut (at a character boundary) to what storage accepts."""
    data = text.encode("utf-8")
    if len(data) <= MAX_OCR_TEXT_BYTES:
        return text
    return data[:MAX_OCR_TEXT_BYTES].decode("utf-8", errors="ignore")


def clip_status_detail(text: str) -> str:
    """A diagnostic string, shortened rather than refused (it is written when things fail)."""
    if len(text) <= MAX_STATUS_DETAIL_CHARS:
        return text
    return text[: MAX_STATUS_DETAIL_CHARS - 1] + "…"


def check_feedback(label: str, comment: str, reported_by: str) -> None:
    _check_text(label, "feedback label", MAX_FEEDBACK_FIELD_BYTES)
    _check_text(comment, "feedback comment", MAX_FEEDBACK_COMMENT_BYTES, allow_newlines=True)
    _check_text(reported_by, "feedback reported_by", MAX_FEEDBACK_FIELD_BYTES)


def check_feedback_count(count: int) -> None:
    if count > MAX_FEEDBACK_PER_IMAGE:
        raise PolicyError(
            f"the image would hold {count} feedback reports, over the limit of "
            f"{MAX_FEEDBACK_PER_IMAGE}",
            limit="feedback_count",
        )


def check_sha256(digest: str) -> str:
    """A lowercase hex sha256, or PolicyError."""
    text = digest.strip().lower()
    if len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
        raise PolicyError(f"{digest[:80]!r} is not a sha256 (64 hex characters)", limit="sha256")
    return text


def short_id(image_id: str, limit: int = 64) -> str:
    """An id for a message: whole when short, else its first `limit` characters and its size."""
    if len(image_id) <= limit:
        return image_id
    return f"{image_id[:limit]}… ({len(image_id)} characters)"


MAX_OWNER_BYTES = 256
MAX_ID_CHARS = 128


def check_owner(owner: str) -> None:
    _check_text(owner, "owner", MAX_OWNER_BYTES)
