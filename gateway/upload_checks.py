"""Checks on an upload before anything is stored: its name, its size and what its bytes are.

The content type is sniffed from the leading bytes (magic numbers), never taken from the
filename or the client's Content-Type. Storage decodes the image again and refuses truncated
files and decompression bombs; these checks give the quick, clear refusals.
"""

from __future__ import annotations

import unicodedata

from gateway.errors import BadRequestError, PayloadTooLargeError, UnsupportedMediaTypeError

MAX_FILENAME_CHARS = 255

# Leading bytes of each image format storage accepts.
_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"BM", "image/bmp"),
    (b"II*\x00", "image/tiff"),
    (b"MM\x00*", "image/tiff"),
)


def sniff_image_type(data: bytes) -> str | None:
    """The image content type the bytes start with, or None when they are no known image."""
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    for signature, content_type in _SIGNATURES:
        if data.startswith(signature):
            return content_type
    return None


def clean_filename(raw: str | None) -> str:
    """The filename to record, or BadRequestError when it is empty or hostile.

    A name is one path component: separators and '..' (path traversal), control characters
    and markup characters are refused rather than silently rewritten, so the uploader knows
    what was stored.
    """
    name = unicodedata.normalize("NFC", (raw or "").strip())
    if not name:
        raise BadRequestError("the file has no filename")
    if len(name) > MAX_FILENAME_CHARS:
        raise BadRequestError(f"the filename is longer than {MAX_FILENAME_CHARS} characters")
    if any(ch in "<>" for ch in name):
        raise BadRequestError("the filename holds '<' or '>', which filenames here may not use")
    if any(unicodedata.category(ch) in {"Cc", "Cf"} for ch in name):
        raise BadRequestError("the filename holds control characters")
    if "/" in name or "\\" in name or name in {".", ".."} or name.startswith(".."):
        raise BadRequestError(
            f"the filename {name!r} holds a path; send the file's name only, without folders"
        )
    return name


def check_upload(filename: str, data: bytes, max_bytes: int) -> str:
    """The sniffed content type of a file fit to store; a 4xx ApiError otherwise."""
    if not data:
        raise BadRequestError(f"{filename}: the file is empty (0 bytes)")
    if len(data) > max_bytes:
        raise PayloadTooLargeError(
            f"{filename}: {len(data)} bytes is over the upload limit of {max_bytes} bytes"
        )
    content_type = sniff_image_type(data)
    if content_type is None:
        raise UnsupportedMediaTypeError(
            f"{filename}: the content is not an image (JPEG, PNG, GIF, WebP, BMP or TIFF), "
            "whatever its name says"
        )
    return content_type
