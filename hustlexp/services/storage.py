"""Where uploaded files live. The database stores object keys, never URLs (DESIGN §7.13).

`Storage` is the interface; `LocalStorage` (the default) writes under instance/. An
S3-compatible backend for production implements the same four methods."""

from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from hustlexp.errors import ValidationError

MAX_PROOF_PHOTO_BYTES = 10 * 1024 * 1024


class Storage(Protocol):
    def put(self, key: str, data: bytes, content_type: str) -> None: ...

    def get(self, key: str) -> bytes: ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> bool: ...


class LocalStorage:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents:
            raise ValueError(f"storage key escapes the storage root: {key!r}")
        return path

    def put(self, key: str, data: bytes, content_type: str) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write then rename, so a reader never sees half a file.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)

    def get(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> bool:
        """Remove the object; False when it was already gone (retention runs twice safely)."""
        try:
            self._path(key).unlink()
        except FileNotFoundError:
            return False
        return True


@dataclass(frozen=True)
class CheckedImage:
    content_type: str
    extension: str
    size: int
    sha256: str


def check_image(data: bytes, *, allow_heic: bool = True, max_bytes: int = MAX_PROOF_PHOTO_BYTES
                ) -> CheckedImage:
    """Identify an image by its content (never by the client's claim) and bound its size."""
    if not data:
        raise ValidationError("the file is empty", details={"file": ["empty"]})
    if len(data) > max_bytes:
        raise ValidationError(f"the file is larger than {max_bytes // (1024 * 1024)} MB",
                              details={"file": [f"max {max_bytes} bytes"]})
    if data.startswith(b"\xff\xd8\xff"):
        kind = ("image/jpeg", "jpg")
    elif data.startswith(b"\x89PNG\r\n\x1a\n"):
        kind = ("image/png", "png")
    elif allow_heic and len(data) >= 12 and data[4:8] == b"ftyp" and data[8:12] in (
            b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1"):
        kind = ("image/heic", "heic")
    else:
        allowed = "JPEG, PNG or HEIC" if allow_heic else "JPEG or PNG"
        raise ValidationError(f"the file is not a {allowed} image", details={"file": [f"must be {allowed}"]})
    return CheckedImage(kind[0], kind[1], len(data), hashlib.sha256(data).hexdigest())
