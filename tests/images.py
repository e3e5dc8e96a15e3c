"""Real, tiny images for upload tests: the server decodes every upload, so magic bytes alone
no longer pass. ``image("JPEG", exif=...)`` writes EXIF the way a phone camera would."""

from __future__ import annotations

import io
from fractions import Fraction
from typing import Any

import pillow_heif
from PIL import Image

pillow_heif.register_heif_opener()


def image(fmt: str = "JPEG", *, size: tuple[int, int] = (8, 8), color: str = "orange",
          taken: str | None = None, offset: str | None = None, gps: tuple[float, float] | None = None,
          make: str | None = None, model: str | None = None) -> bytes:
    """An image in `fmt` (JPEG, PNG, HEIF). taken: "YYYY:MM:DD HH:MM:SS"; offset: "+02:00";
    gps: (lat, lng) in degrees."""
    exif = Image.Exif()
    if make:
        exif[0x010F] = make
    if model:
        exif[0x0110] = model
    if taken:
        detail: dict[int, Any] = {0x9003: taken}
        if offset:
            detail[0x9011] = offset
        exif[0x8769] = detail
    if gps:
        lat, lng = gps
        exif[0x8825] = {1: "N" if lat >= 0 else "S", 2: _dms(abs(lat)),
                        3: "E" if lng >= 0 else "W", 4: _dms(abs(lng))}
    out = io.BytesIO()
    kwargs: dict[str, Any] = {"exif": exif.tobytes()} if len(exif) else {}
    Image.new("RGB", size, color).save(out, format=fmt, **kwargs)
    return out.getvalue()


def _dms(value: float) -> tuple[Fraction, Fraction, Fraction]:
    degrees = int(value)
    minutes = int((value - degrees) * 60)
    seconds = Fraction(round((value - degrees - minutes / 60) * 3600 * 10000), 10000)
    return Fraction(degrees), Fraction(minutes), seconds


JPEG = image("JPEG")
PNG = image("PNG")
HEIC = image("HEIF")
