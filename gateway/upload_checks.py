"""Checks on an upload before anything is stored: its name, its size and what its bytes are.

The rules are storage's own (`storage_service.columnstore.policy`, the one policy shared by
storage, the gateway and vision); here they give quick, clear HTTP refusals before the bytes
travel on. The content type is sniffed from the leading bytes (magic numbers), never taken
from the filename or the client's Content-Type. Storage decodes the image again and refuses
truncated files, decompression bombs and anything else outside the policy.
"""

from __future__ import annotations

import io
import re
import warnings

from PIL import Image
from werkzeug.datastructures import FileStorage

from gateway.errors import BadRequestError, PayloadTooLargeError, UnsupportedMediaTypeError
from gateway.sizes import size_text
from storage_service.columnstore import policy

MAX_FILENAME_BYTES = policy.MAX_FILENAME_BYTES


def sniff_image_type(data: bytes) -> str | None:
    """The image content type the bytes start with, or None when they are no accepted image."""
    return policy.sniff_content_type(data)


# The quoted filename parameter of a multipart part's Content-Disposition, as sent.
_QUOTED_FILENAME = re.compile(r'filename="((?:[^"\\]|\\.)*)"')


def upload_filename(upload: FileStorage) -> str:
    """The uploaded file's name as the client sent it.

    Werkzeug reads the quoted name with every backslash as an escape, so a client that sends
    backslashes raw (python-requests: `..\\..\\windows\\evil.jpg`) would have it stored as
    `....windowsevil.jpg`, a name nobody sent. Browsers never escape with a backslash (HTML
    writes `"` as %22) and curl escapes only `"` and `\\` itself: a backslash that does not
    escape a quote is part of the name, and the name then holds a path separator, which
    clean_filename refuses."""
    header = upload.headers.get("Content-Disposition", "")
    found = _QUOTED_FILENAME.search(header)
    if found is None:
        return upload.filename or ""
    raw = found.group(1).replace('\\"', '"')
    return raw if "\\" in raw else upload.filename or ""


def clean_filename(raw: str | None) -> str:
    """The filename to record (NFC, trimmed), or BadRequestError naming the rule it breaks.

    A name is one path component of printable text in any script, at most 255 UTF-8 bytes:
    separators and '..' (path traversal), control characters (NUL, CR, LF, ...) and markup
    characters are refused rather than silently rewritten, so the uploader knows what was
    stored.
    """
    try:
        return policy.clean_filename(raw)
    except policy.PolicyError as e:
        raise BadRequestError(str(e)) from e


def check_upload(filename: str, data: bytes, max_bytes: int) -> str:
    """The sniffed content type of a file fit to store; a 4xx ApiError otherwise."""
    if not data:
        raise BadRequestError(f"{filename}: the file is empty (0 bytes)")
    if len(data) > max_bytes:
        raise PayloadTooLargeError(
            f"{filename}: {size_text(len(data))} is over the upload limit of"
            f" {size_text(max_bytes, exact=True)}"
        )
    content_type = sniff_image_type(data)
    if content_type is None:
        other = _other_image_format(data)
        if other:
            raise UnsupportedMediaTypeError(
                f"{filename}: the {other} format is not accepted "
                f"(accepted: {policy.ACCEPTED_FORMAT_NAMES})"
            )
        raise UnsupportedMediaTypeError(
            f"{filename}: the content is not an image ({policy.ACCEPTED_FORMAT_NAMES}), "
            "whatever its name says"
        )
    return content_type


def _other_image_format(data: bytes) -> str:
    """The name of an image format Pillow recognises from the header but the policy does not
    accept (ICO, PSD, PCX, ...), so the refusal can name it; "" for anything else."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as image:  # reads the header only
                return str(image.format or "")
    except Exception:  # noqa: BLE001 - not an image Pillow knows: the generic message
        return ""
