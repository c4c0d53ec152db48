"""Where a photo was taken: read it for the owner, blank it out of originals served to others.

`strip_gps` removes the EXIF GPS directory (and XMP GPS properties) *in place*: the bytes keep
their length and everything else stays byte-identical, pixels included, so no container offset
moves and nothing is re-encoded. The GPS directory is emptied (entry count 0) and every byte
it held, out-of-line values included, is zeroed. That works the same in every container that
stores the EXIF TIFF block verbatim (JPEG APP1, PNG eXIf with its CRC recomputed, WebP EXIF,
HEIF/AVIF Exif items); a TIFF file's own GPS tags are left alone (see `strippable`).
"""

from __future__ import annotations

import io
import re
import struct
import warnings
import zlib
from dataclasses import dataclass

import pillow_heif
from PIL import ExifTags, Image

# HEIC/HEIF photos (phones) carry their EXIF, GPS included, like any other.
pillow_heif.register_heif_opener()

GPS_IFD_TAG = 0x8825
# Bytes per value of each TIFF field type.
_TYPE_SIZES = {1: 1, 2: 1, 3: 2, 4: 4, 5: 8, 6: 1, 7: 1, 8: 2, 9: 4, 10: 8, 11: 4, 12: 8, 13: 4}
_XMP_GPS = re.compile(
    rb'(exif:GPS\w+\s*=\s*")([^"]*)(")|(<exif:GPS(\w+)>)(.*?)(</exif:GPS\5>)', re.DOTALL
)


@dataclass(frozen=True)
class Coordinates:
    latitude: float
    longitude: float

    def human(self) -> str:
        """ "48.85837° N, 2.29448° E"."""
        ns = "N" if self.latitude >= 0 else "S"
        ew = "E" if self.longitude >= 0 else "W"
        return f"{abs(self.latitude):.5f}° {ns}, {abs(self.longitude):.5f}° {ew}"


def _open(data: bytes) -> Image.Image | None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return Image.open(io.BytesIO(data))
    except Exception:  # noqa: BLE001 - a picture we cannot read simply has no location
        return None


def _degrees(value: object) -> float | None:
    try:
        d, m, s = (float(part) for part in value)  # type: ignore[attr-defined]
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return d + m / 60 + s / 3600


def gps_coordinates(data: bytes) -> Coordinates | None:
    """The EXIF GPS position of an image (the first MiB of a JPEG is enough), or None."""
    image = _open(data)
    if image is None:
        return None
    with image:
        try:
            gps = image.getexif().get_ifd(ExifTags.IFD.GPSInfo)
        except Exception:  # noqa: BLE001 - broken EXIF: no location
            return None
    lat = _degrees(gps.get(ExifTags.GPS.GPSLatitude))
    lon = _degrees(gps.get(ExifTags.GPS.GPSLongitude))
    if lat is None or lon is None or not (-90 <= lat <= 90 and -180 <= lon <= 180):
        return None
    if str(gps.get(ExifTags.GPS.GPSLatitudeRef, "N")).upper().startswith("S"):
        lat = -lat
    if str(gps.get(ExifTags.GPS.GPSLongitudeRef, "E")).upper().startswith("W"):
        lon = -lon
    return Coordinates(round(lat, 6), round(lon, 6))


def _exif_block(data: bytes) -> bytes | None:
    image = _open(data)
    if image is None:
        return None
    with image:
        if image.format == "TIFF":
            return None
        blob = image.info.get("exif")
    if not isinstance(blob, bytes) or len(blob) < 8:
        return None
    return blob[6:] if blob.startswith(b"Exif\x00\x00") else blob


def _blank_gps_ifd(buf: bytearray, start: int, end: int) -> bool:
    """Empty the GPS IFD of the TIFF block buf[start:end]; True when there was one."""
    tiff = memoryview(buf)[start:end]
    order = {b"II": "<", b"MM": ">"}.get(bytes(tiff[:2]))
    if order is None:
        return False

    def u16(at: int) -> int:
        return int(struct.unpack_from(order + "H", tiff, at)[0])

    def u32(at: int) -> int:
        return int(struct.unpack_from(order + "I", tiff, at)[0])

    try:
        ifd0 = u32(4)
        gps_at = 0
        for i in range(u16(ifd0)):
            entry = ifd0 + 2 + 12 * i
            if u16(entry) == GPS_IFD_TAG:
                gps_at = u32(entry + 8)
        if not gps_at:
            return False
        count = u16(gps_at)
        for i in range(count):
            entry = gps_at + 2 + 12 * i
            size = _TYPE_SIZES.get(u16(entry + 2), 1) * u32(entry + 4)
            if size > 4:
                offset = u32(entry + 8)
                if offset + size <= len(tiff):
                    tiff[offset : offset + size] = bytes(size)
        entries_end = min(gps_at + 2 + 12 * count + 4, len(tiff))
        tiff[gps_at:entries_end] = bytes(entries_end - gps_at)
    except struct.error:
        return False
    return True


def _fix_png_crc(buf: bytearray, position: int) -> None:
    """Recompute the CRC of the PNG chunk holding `position`."""
    at = 8
    while at + 12 <= len(buf):
        (length,) = struct.unpack_from(">I", buf, at)
        data_end = at + 8 + length
        if at + 8 <= position < data_end:
            struct.pack_into(">I", buf, data_end, zlib.crc32(buf[at + 4 : data_end]))
            return
        at = data_end + 4


def _blank_xmp_gps(buf: bytearray) -> bool:
    start = buf.find(b"<x:xmpmeta")
    end = buf.find(b"</x:xmpmeta>", start)
    if start < 0 or end < 0:
        return False
    packet = bytes(buf[start:end])

    def blank(match: re.Match[bytes]) -> bytes:
        if match.group(1) is not None:
            return match.group(1) + b" " * len(match.group(2)) + match.group(3)
        return match.group(4) + b" " * len(match.group(6)) + match.group(7)

    cleaned = _XMP_GPS.sub(blank, packet)
    if cleaned == packet:
        return False
    buf[start:end] = cleaned  # same length: nothing else moves
    return True


def strip_gps(data: bytes) -> bytes:
    """`data` with its GPS position blanked out, the same length; `data` itself when it has
    none (or keeps it in a place this does not handle: see `strippable`)."""
    buf: bytearray | None = None
    block = _exif_block(data)
    if block is not None:
        at = data.find(block)
        if at >= 0:
            buf = bytearray(data)
            if _blank_gps_ifd(buf, at, at + len(block)):
                if data.startswith(b"\x89PNG\r\n\x1a\n"):
                    _fix_png_crc(buf, at)
            else:
                buf = None
    if b"exif:GPS" in data:
        xmp = buf if buf is not None else bytearray(data)
        if _blank_xmp_gps(xmp):
            buf = xmp
            if data.startswith(b"\x89PNG\r\n\x1a\n"):
                _fix_png_crc(buf, buf.find(b"<x:xmpmeta"))
    return bytes(buf) if buf is not None else data


def strippable(data: bytes) -> bool:
    """False when the image has a GPS position that `strip_gps` leaves in place."""
    return gps_coordinates(strip_gps(data)) is None
