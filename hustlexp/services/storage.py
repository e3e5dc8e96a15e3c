"""Where uploaded files live. The database stores object keys, never URLs (DESIGN §7.13).

`Storage` is the interface. `LocalStorage` (the embedded default) writes under instance/ and
plays the object store's part for direct uploads: its presigned URLs point at the API
(hustlexp.api.objects), signed with an HMAC key every process on the machine shares.
`S3Storage` talks to any S3-compatible store (AWS S3, Cloudflare R2, MinIO) through boto3;
every API host then reads what any other stored. `build_storage(settings)` picks one."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import quote, urlencode

if TYPE_CHECKING:
    from hustlexp.config import Settings

# The API path LocalStorage's signed URLs point at (served by hustlexp.api.uploads).
LOCAL_OBJECTS_PATH = "/storage/objects/"
# Objects under this prefix are public (avatars, STORAGE_SPEC §5.1); every other one is read
# through a short-lived signed URL.
PUBLIC_PREFIX = "avatars/"


@dataclass(frozen=True)
class ObjectInfo:
    size: int
    content_type: str | None


@dataclass(frozen=True)
class PresignedPut:
    """What a client needs to upload one object straight to the store: PUT `url` with exactly
    these headers (the store refuses another content type or length)."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)
    method: str = "PUT"


class Storage(Protocol):
    def put(self, key: str, data: bytes, content_type: str) -> None: ...

    def get(self, key: str) -> bytes: ...

    def exists(self, key: str) -> bool: ...

    def delete(self, key: str) -> None: ...

    def head(self, key: str) -> ObjectInfo | None:
        """Size and content type of the stored object; None when there is none."""
        ...

    def presign_put(self, key: str, content_type: str, size: int, expires_in: int) -> PresignedPut: ...

    def presign_get(self, key: str, expires_in: int) -> str: ...

    def public_url(self, key: str) -> str: ...


class LocalStorage:
    def __init__(self, root: Path, *, base_url: str = "", secret: bytes | None = None) -> None:
        self.root = Path(root)
        self.base_url = base_url.rstrip("/")
        self._secret = secret

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
        # The content type the uploader was bound to, beside the object (as S3 keeps it).
        self._type_path(path).write_text(content_type)

    def get(self, key: str) -> bytes:
        return self._path(key).read_bytes()

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def delete(self, key: str) -> None:
        """Remove the object; a key that holds nothing is already deleted."""
        path = self._path(key)
        path.unlink(missing_ok=True)
        self._type_path(path).unlink(missing_ok=True)

    def head(self, key: str) -> ObjectInfo | None:
        path = self._path(key)
        if not path.is_file():
            return None
        kind = self._type_path(path)
        return ObjectInfo(path.stat().st_size, kind.read_text() if kind.is_file() else None)

    @staticmethod
    def _type_path(path: Path) -> Path:
        return path.with_name(f".{path.name}.type")

    # -- signed URLs (the API stands in for the object store) --------------------------

    @property
    def secret(self) -> bytes:
        """The signing key: given, or kept in a file under the storage root so every process on
        this machine (gunicorn workers, a second `serve`) signs and checks with the same key."""
        if self._secret is None:
            path = self.root / ".signing-key"
            if not path.is_file():
                self.root.mkdir(parents=True, exist_ok=True)
                fd, tmp = tempfile.mkstemp(dir=self.root, prefix=".key-")
                with os.fdopen(fd, "w") as fh:
                    fh.write(secrets.token_hex(32))
                with contextlib.suppress(FileExistsError):
                    os.link(tmp, path)  # first writer wins; the others read its key
                os.unlink(tmp)
            self._secret = path.read_text().strip().encode()
        return self._secret

    def sign(self, method: str, key: str, expires: int, content_type: str = "", size: int = 0) -> str:
        message = "\n".join((method, key, str(expires), content_type, str(size))).encode()
        return hmac.new(self.secret, message, hashlib.sha256).hexdigest()

    def check_signature(self, method: str, key: str, expires: int, signature: str,
                        content_type: str = "", size: int = 0) -> bool:
        # As bytes: compare_digest refuses non-ASCII text, and a URL may carry anything.
        expected = self.sign(method, key, expires, content_type, size).encode()
        return hmac.compare_digest(expected, signature.encode("utf-8", "replace"))

    def _url(self, key: str, query: dict[str, Any]) -> str:
        return f"{self.base_url}{LOCAL_OBJECTS_PATH}{quote(key)}" + (f"?{urlencode(query)}" if query else "")

    def presign_put(self, key: str, content_type: str, size: int, expires_in: int) -> PresignedPut:
        expires = _now_epoch() + expires_in
        signature = self.sign("PUT", key, expires, content_type, size)
        return PresignedPut(self._url(key, {"expires": expires, "signature": signature}),
                            {"Content-Type": content_type, "Content-Length": str(size)})

    def presign_get(self, key: str, expires_in: int) -> str:
        expires = _now_epoch() + expires_in
        return self._url(key, {"expires": expires, "signature": self.sign("GET", key, expires)})

    def public_url(self, key: str) -> str:
        return self._url(key, {})


class S3Storage:
    """One bucket of an S3-compatible store; keys carry the spec's bucket names as prefixes
    (proofs/, avatars/, messages/, evidence/). Credentials come from boto3's usual chain
    (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, a profile, an instance role)."""

    def __init__(self, bucket: str, *, endpoint_url: str | None = None, region: str | None = None,
                 public_url: str | None = None, client: Any = None) -> None:
        self.bucket = bucket
        self._public_base = public_url.rstrip("/") if public_url else None
        if client is None:
            import boto3
            from botocore.config import Config

            # SigV4 binds content type and length into a presigned PUT; path-style addressing
            # works with MinIO and R2 as well as AWS.
            client = boto3.client("s3", endpoint_url=endpoint_url, region_name=region or "us-east-1",
                                  config=Config(signature_version="s3v4", s3={"addressing_style": "path"},
                                                retries={"max_attempts": 3, "mode": "standard"},
                                                connect_timeout=5, read_timeout=20))
        self.client = client

    def put(self, key: str, data: bytes, content_type: str) -> None:
        self.client.put_object(Bucket=self.bucket, Key=key, Body=data, ContentType=content_type)

    def get(self, key: str) -> bytes:
        body: bytes = self.client.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        return body

    def exists(self, key: str) -> bool:
        return self.head(key) is not None

    def delete(self, key: str) -> None:
        """Remove the object; a key that holds nothing is already deleted (S3 answers 204)."""
        self.client.delete_object(Bucket=self.bucket, Key=key)

    def head(self, key: str) -> ObjectInfo | None:
        from botocore.exceptions import ClientError

        try:
            answer = self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return None
            raise
        return ObjectInfo(int(answer["ContentLength"]), answer.get("ContentType"))

    def presign_put(self, key: str, content_type: str, size: int, expires_in: int) -> PresignedPut:
        url = self.client.generate_presigned_url(
            "put_object", ExpiresIn=expires_in,
            Params={"Bucket": self.bucket, "Key": key, "ContentType": content_type, "ContentLength": size})
        return PresignedPut(url, {"Content-Type": content_type, "Content-Length": str(size)})

    def presign_get(self, key: str, expires_in: int) -> str:
        url: str = self.client.generate_presigned_url("get_object", ExpiresIn=expires_in,
                                                      Params={"Bucket": self.bucket, "Key": key})
        return url

    def public_url(self, key: str) -> str:
        """The CDN address when one is configured (the bucket serves avatars/ publicly)."""
        if self._public_base:
            return f"{self._public_base}/{quote(key)}"
        endpoint = self.client.meta.endpoint_url.rstrip("/")
        return f"{endpoint}/{self.bucket}/{quote(key)}"


def build_storage(settings: Settings) -> Storage:
    if settings.storage == "s3":
        assert settings.s3_bucket is not None  # config.load refuses s3 without a bucket
        return S3Storage(settings.s3_bucket, endpoint_url=settings.s3_endpoint_url, region=settings.s3_region,
                         public_url=settings.s3_public_url)
    secret = settings.storage_secret.encode() if settings.storage_secret else None
    return LocalStorage(settings.storage_dir, base_url=settings.app_url, secret=secret)


def _now_epoch() -> int:
    return int(time.time())

