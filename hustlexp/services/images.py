"""Uploaded images: decoded with Pillow before anything is stored (DESIGN §7.13), and what their
EXIF says about when, where and with what camera they were taken (spec api.md, proofs).

Magic bytes alone let any file that starts like a JPEG through (``\\xff\\xd8\\xff<?php ...``);
here the whole image must decode. HEIC decodes through pillow-heif."""

from __future__ import annotations

import hashlib
import io
import struct
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pillow_heif
from PIL import Image, UnidentifiedImageError

from hustlexp.errors import PayloadTooLarge, ValidationError

pillow_heif.register_heif_opener()

MAX_PHOTO_BYTES = 10 * 1024 * 1024
# Beyond any phone camera; bounds the memory one decode may take (a small file can claim a
# huge canvas).
MAX_PIXELS = 120_000_000

# Pillow's format name -> (content type, file extension)
_FORMATS = {"JPEG": ("image/jpeg", "jpg"), "PNG": ("image/png", "png"), "HEIF": ("image/heic", "heic")}

# EXIF tags (CIPA DC-008)
_MAKE, _MODEL, _DATETIME = 0x010F, 0x0110, 0x0132
_EXIF_IFD, _GPS_IFD = 0x8769, 0x8825
_DATETIME_ORIGINAL, _OFFSET_TIME_ORIGINAL = 0x9003, 0x9011
_GPS_LAT_REF, _GPS_LAT, _GPS_LNG_REF, _GPS_LNG = 1, 2, 3, 4


@dataclass(frozen=True)
class CheckedImage:
    content_type: str
    extension: str
    size: int
    sha256: str
    capture_time: datetime | None = None
    location_lat: float | None = None
    location_lng: float | None = None
    camera_make: str | None = None
    camera_model: str | None = None


def check_image(data: bytes, *, max_bytes: int = MAX_PHOTO_BYTES) -> CheckedImage:
    """Decode `data` as a JPEG, PNG or HEIC image (never trusting the client's claim) and read
    its EXIF. Empty or undecodable: ValidationError; over `max_bytes`: PayloadTooLarge."""
    if not data:
        raise ValidationError("the file is empty", details={"file": ["empty"]})
    if len(data) > max_bytes:
        raise PayloadTooLarge(f"the file is larger than {max_bytes // (1024 * 1024)} MB",
                              details={"file": [f"max {max_bytes} bytes"]})
    refused = ValidationError("the file is not a JPEG, PNG or HEIC image that decodes",
                              details={"file": ["must be a JPEG, PNG or HEIC image"]})
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=list(_FORMATS)) as image:
                if image.format not in _FORMATS or image.width * image.height > MAX_PIXELS:
                    raise refused
                image.load()  # the whole image, not just its header
                exif = image.getexif()
                kind = _FORMATS[image.format]
    except ValidationError:
        raise
    # Pillow and its plugins report corrupt input through many exception types.
    except (UnidentifiedImageError, Image.DecompressionBombError, Image.DecompressionBombWarning,
            OSError, SyntaxError, ValueError, TypeError, IndexError, KeyError, EOFError,
            ZeroDivisionError, struct.error) as exc:
        raise refused from exc
    lat, lng = _location(exif)
    return CheckedImage(kind[0], kind[1], len(data), hashlib.sha256(data).hexdigest(),
                        capture_time=_capture_time(exif), location_lat=lat, location_lng=lng,
                        camera_make=_text(exif.get(_MAKE)), camera_model=_text(exif.get(_MODEL)))


# -- EXIF ------------------------------------------------------------------------
# Camera metadata is written by anything; a value that does not parse is treated as absent,
# never as a reason to refuse the photo.

def _text(value: Any, limit: int = 100) -> str | None:
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        return None
    text = value.replace("\x00", " ").strip()
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return None
    return text[:limit] or None


def _capture_time(exif: Image.Exif) -> datetime | None:
    """DateTimeOriginal with its OffsetTimeOriginal; without an offset the camera's clock is
    read as UTC (EXIF before 2.31 records no zone)."""
    try:
        detail = exif.get_ifd(_EXIF_IFD)
    except (KeyError, ValueError, TypeError, OSError):
        detail = {}
    stamp = _text(detail.get(_DATETIME_ORIGINAL)) or _text(exif.get(_DATETIME))
    if not stamp:
        return None
    try:
        taken = datetime.strptime(stamp[:19], "%Y:%m:%d %H:%M:%S")
    except ValueError:
        return None
    zone: timezone = UTC
    offset = _text(detail.get(_OFFSET_TIME_ORIGINAL))
    if offset and len(offset) == 6 and offset[0] in "+-" and offset[3] == ":":
        try:
            delta = timedelta(hours=int(offset[1:3]), minutes=int(offset[4:6]))
            zone = timezone(delta if offset[0] == "+" else -delta)
        except ValueError:
            pass
    return taken.replace(tzinfo=zone)


def _location(exif: Image.Exif) -> tuple[float | None, float | None]:
    try:
        gps = exif.get_ifd(_GPS_IFD)
        lat = _degrees(gps.get(_GPS_LAT), gps.get(_GPS_LAT_REF), "S")
        lng = _degrees(gps.get(_GPS_LNG), gps.get(_GPS_LNG_REF), "W")
    except (KeyError, ValueError, TypeError, ZeroDivisionError, OSError):
        return None, None
    if lat is None or lng is None or not (-90 <= lat <= 90 and -180 <= lng <= 180):
        return None, None
    return round(lat, 7), round(lng, 7)


def _degrees(dms: Any, ref: Any, negative: str) -> float | None:
    if not isinstance(dms, tuple) or len(dms) != 3:
        return None
    degrees, minutes, seconds = (float(part) for part in dms)
    value = degrees + minutes / 60 + seconds / 3600
    if value != value:  # NaN from a 0/0 rational
        return None
    return -value if _text(ref) == negative else value
