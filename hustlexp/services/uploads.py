"""UploadService: photos sent straight to object storage (STORAGE_SPEC §4, DESIGN §7.13).

1. `create`: the client announces bucket, content type and size (and the task); it gets a
   presigned PUT with the type and length bound into the signature, valid PUT_TTL seconds,
   and the upload's id. Its row is PENDING.
2. The client PUTs the bytes to the store (with local storage, to the API: `receive_local`).
3. `confirm`: the server fetches the object, checks its size and type against the announcement,
   decodes it as an image, hashes it and reads its EXIF; only then is it attached: a proof
   photo (proofs), the profile picture (avatars), or CONFIRMED for a later photo message
   (messages) or dispute (evidence), which claim it with `attach`.

Reads: avatars are public; every other object is read through a signed URL valid a short
while, which only the task's poster, its worker or an admin obtain (`read_url`).
Unused rows wait until `expires_at`; retention then removes them and their objects."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID, uuid4

from hustlexp.errors import Conflict, Forbidden, NotFound, PayloadTooLarge, Unavailable, ValidationError
from hustlexp.services import audit
from hustlexp.services.base import Service, one, returning, returns_result
from hustlexp.services.images import CheckedImage, check_image
from hustlexp.services.storage import PUBLIC_PREFIX, LocalStorage

log = logging.getLogger("hustlexp.uploads")

MB = 1024 * 1024


@dataclass(frozen=True)
class Bucket:
    max_bytes: int
    content_types: tuple[str, ...]
    read_ttl: int  # seconds a signed GET stays valid


# STORAGE_SPEC §1 and its quick reference; evidence takes what a proof takes.
BUCKETS = {
    "proofs": Bucket(10 * MB, ("image/jpeg", "image/png", "image/heic"), 3600),
    "avatars": Bucket(5 * MB, ("image/jpeg", "image/png"), 0),
    "messages": Bucket(5 * MB, ("image/jpeg", "image/png"), 3600),
    "evidence": Bucket(10 * MB, ("image/jpeg", "image/png", "image/heic"), 900),
}
EXTENSIONS = {"image/jpeg": "jpg", "image/png": "png", "image/heic": "heic"}
# How long a presigned PUT is valid (STORAGE_SPEC §4.2: 15 min), and how long after it the
# upload may still be confirmed (a PUT started just in time may finish late).
PUT_TTL = 900
CONFIRM_GRACE = timedelta(minutes=5)
# Where an avatar waits for its confirm: outside the public avatars/ prefix.
INCOMING_PREFIX = "incoming/"
# How long a confirmed message photo or evidence waits for the message or dispute using it.
ATTACH_WINDOW = timedelta(hours=24)

_COLUMNS = """id, user_id, bucket, task_id, storage_key, content_type, file_size_bytes, state, expires_at,
              checksum_sha256, capture_time, confirmed_at, attached_at, created_at"""


class UploadService(Service):
    @returns_result
    def create(self, user_id: UUID, *, bucket: str, content_type: str, size: int,
               task_id: UUID | None = None) -> dict[str, Any]:
        """The upload's row and where to PUT it: {upload, upload_url, method, headers, expires_at}."""
        rules = BUCKETS.get(bucket)
        if rules is None:
            raise ValidationError("unknown bucket", details={"bucket": [", ".join(BUCKETS)]})
        errors: dict[str, list[str]] = {}
        if content_type not in rules.content_types:
            errors["content_type"] = [f"one of {', '.join(rules.content_types)} for {bucket}"]
        if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= rules.max_bytes:
            errors["size"] = [f"1 to {rules.max_bytes} bytes for {bucket}"]
        if (bucket == "avatars") != (task_id is None):
            errors["task_id"] = ["not for avatars" if bucket == "avatars" else f"required for {bucket}"]
        if errors:
            raise ValidationError("the upload is not valid", details=errors)
        now = self.s.clock()
        with self.db.transaction() as conn:
            if task_id is not None:
                self._check_task(conn, bucket, task_id, user_id)
            key = f"{bucket}/{task_id or user_id}/{uuid4().hex}.{EXTENSIONS[content_type]}"
            if bucket == "avatars":  # avatars/ is public: unchecked bytes wait outside it
                key = INCOMING_PREFIX + key
            row = returning(conn, f"""INSERT INTO uploads (user_id, bucket, task_id, storage_key, content_type,
                                                           file_size_bytes, expires_at)
                                      VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING {_COLUMNS}""",
                            (user_id, bucket, task_id, key, content_type, size,
                             now + timedelta(seconds=PUT_TTL) + CONFIRM_GRACE))
        with _storage_errors():
            target = self.s.storage.presign_put(key, content_type, size, PUT_TTL)
        return {"upload": row, "upload_url": target.url, "method": target.method, "headers": target.headers,
                "expires_at": now + timedelta(seconds=PUT_TTL)}

    @returns_result
    def confirm(self, upload_id: UUID, user_id: UUID, *, capture_time: datetime | None = None) -> dict[str, Any]:
        """Check the stored object and attach it: {upload, photo, avatar_url}. Confirming again
        returns the upload as it is. A stored object that breaks the announcement is deleted
        (the client may PUT again while the upload has not expired)."""
        with self.db.transaction() as conn:
            upload = self._own(conn, upload_id, user_id)
        if upload["state"] != "PENDING":
            return {"upload": upload, "photo": None, "avatar_url": None}
        if self.s.clock() > upload["expires_at"]:
            raise Conflict("the upload expired; ask for a new one")
        image, data = self._fetch_and_check(upload)
        with self.db.transaction() as conn:
            upload = self._own(conn, upload_id, user_id, lock=True)
            if upload["state"] != "PENDING":  # a concurrent confirm won
                return {"upload": upload, "photo": None, "avatar_url": None}
            now = self.s.clock()
            photo = avatar_url = None
            key = upload["storage_key"]
            if upload["bucket"] == "proofs":
                photo = self.s.proofs.attach_photo(upload["task_id"], user_id, image, key=upload["storage_key"],
                                                   capture_time=capture_time).unwrap()
            elif upload["bucket"] == "avatars":
                incoming = upload["storage_key"]
                public_key = incoming.removeprefix(INCOMING_PREFIX)
                with _storage_errors():
                    self.s.storage.put(public_key, data, image.content_type)
                key = public_key
                self._delete_files_after_commit([incoming])
                avatar_url = self.s.storage.public_url(public_key)
                conn.execute("UPDATE users SET avatar_url = %s WHERE id = %s", (avatar_url, user_id))
            attached = photo is not None or avatar_url is not None
            upload = returning(conn, f"""
                UPDATE uploads SET state = %s, checksum_sha256 = %s, capture_time = %s, confirmed_at = %s,
                                   attached_at = %s, expires_at = %s, storage_key = %s
                 WHERE id = %s RETURNING {_COLUMNS}""",
                ("ATTACHED" if attached else "CONFIRMED", image.sha256, image.capture_time or capture_time, now,
                 now if attached else None, now + ATTACH_WINDOW, key, upload_id))
            return {"upload": upload, "photo": photo, "avatar_url": avatar_url}

    def attach(self, conn: Any, user_id: UUID, task_id: UUID, keys: Sequence[str], *, bucket: str,
               field: str, dispute_id: UUID | None = None) -> list[dict[str, Any]]:
        """Inside the caller's transaction: claim the sender's CONFIRMED uploads named by `keys`
        (of this task and bucket) and record each as evidence. Any other key is refused
        (ValidationError on `field`), and nothing is claimed."""
        wanted = list(dict.fromkeys(keys))
        rows = conn.execute(f"""SELECT {_COLUMNS} FROM uploads
                                 WHERE storage_key = ANY(%s) AND user_id = %s AND task_id = %s AND bucket = %s
                                   AND state = 'CONFIRMED' ORDER BY storage_key FOR UPDATE""",
                            (wanted, user_id, task_id, bucket)).fetchall()
        found = {r["storage_key"] for r in rows}
        unknown = [k for k in wanted if k not in found]
        if unknown or len(wanted) != len(keys):
            details = [f"not a confirmed {bucket} upload of yours for this task: {k}" for k in unknown]
            raise ValidationError(f"{field} must name your confirmed uploads, each once",
                                  details={field: details or ["each key once"]})
        conn.execute("""WITH claimed AS (
                            UPDATE uploads SET state = 'ATTACHED', attached_at = %s WHERE id = ANY(%s)
                            RETURNING storage_key, content_type, file_size_bytes, checksum_sha256, capture_time)
                        INSERT INTO evidence (task_id, dispute_id, submitted_by, evidence_type, storage_key,
                                              content_type, file_size_bytes, checksum_sha256, capture_time)
                        SELECT %s, %s, %s, 'PHOTO', storage_key, content_type, file_size_bytes, checksum_sha256,
                               capture_time
                          FROM claimed ORDER BY storage_key""",
                     (self.s.clock(), [r["id"] for r in rows], task_id, dispute_id, user_id))
        return [r for k in keys for r in rows if r["storage_key"] == k]

    @returns_result
    def read_url(self, key: str, viewer_id: UUID) -> dict[str, Any]:
        """A URL to read a stored object: {url, expires_at} (expires_at None: public). Avatars
        are public; anything else only for the task's poster, worker or an admin, and an
        upload not yet attached only for its uploader (or an admin)."""
        if key.startswith(PUBLIC_PREFIX):
            with self.db.transaction() as conn:
                if one(conn, "SELECT 1 FROM uploads WHERE storage_key = %s AND state = 'ATTACHED'", (key,)) is None:
                    raise NotFound("no such object")
            return {"url": self.s.storage.public_url(key), "expires_at": None}
        with self.db.transaction() as conn:
            task_id = self._owning_task(conn, key, viewer_id)
            task = one(conn, "SELECT poster_id, worker_id FROM tasks WHERE id = %s", (task_id,))
            assert task is not None
            audit.require_party_or_admin(conn, (task["poster_id"], task["worker_id"]), viewer_id,
                                         "only the task's poster, its worker or an admin can read its photos")
        ttl = BUCKETS.get(key.split("/", 1)[0], BUCKETS["proofs"]).read_ttl
        with _storage_errors():
            url = self.s.storage.presign_get(key, ttl)
        return {"url": url, "expires_at": self.s.clock() + timedelta(seconds=ttl)}

    # -- the local store's stand-in for the object store's own endpoints ------------------

    @returns_result
    def receive_local(self, key: str, *, expires: int, signature: str, content_type: str | None,
                      data: bytes) -> dict[str, Any]:
        """A PUT to a presigned local URL: refused (403, as S3 would) when expired, signed for
        another object, or with another content type or length than the signature binds."""
        storage = self._local()
        _check_key(key)
        with self.db.transaction() as conn:
            upload = one(conn, "SELECT content_type, file_size_bytes FROM uploads "
                               "WHERE storage_key = %s AND state = 'PENDING'", (key,))
        if upload is None or not storage.check_signature("PUT", key, expires, signature,
                                                         upload["content_type"], upload["file_size_bytes"]):
            raise Forbidden("the upload URL's signature does not match")
        if expires < time.time():  # the store's own clock, as S3 checks its presigned URLs
            raise Forbidden("the upload URL expired")
        if content_type != upload["content_type"] or len(data) != upload["file_size_bytes"]:
            raise Forbidden("the content type or length differs from what the upload URL was signed for")
        storage.put(key, data, upload["content_type"])
        return {"key": key, "size": len(data)}

    @returns_result
    def read_local(self, key: str, *, expires: int | None, signature: str | None) -> tuple[bytes, str]:
        """A GET of a local object: avatars freely, anything else with a valid signature."""
        storage = self._local()
        _check_key(key)
        if key.startswith(PUBLIC_PREFIX):
            # Public once confirmed: unchecked bytes are never served from our host.
            with self.db.transaction() as conn:
                if one(conn, "SELECT 1 FROM uploads WHERE storage_key = %s AND state = 'ATTACHED'", (key,)) is None:
                    raise NotFound("no such object")
        else:
            if expires is None or signature is None or not storage.check_signature("GET", key, expires, signature):
                raise Forbidden("the download URL's signature does not match")
            if expires < time.time():  # the store's own clock, as S3 checks its presigned URLs
                raise Forbidden("the download URL expired")
        try:
            info = storage.head(key)
        except (ValueError, OSError):  # a key no upload ever had (escaping the root, too long)
            info = None
        if info is None:
            raise NotFound("no such object")
        return storage.get(key), info.content_type or "application/octet-stream"

    # -- internals -------------------------------------------------------------------------

    def _local(self) -> LocalStorage:
        storage = self.s.storage
        if not isinstance(storage, LocalStorage):
            raise NotFound("uploads go to the object store itself")
        return storage

    def _own(self, conn: Any, upload_id: UUID, user_id: UUID, *, lock: bool = False) -> dict[str, Any]:
        upload = one(conn, f"SELECT {_COLUMNS} FROM uploads WHERE id = %s" + (" FOR UPDATE" if lock else ""),
                     (upload_id,))
        if upload is None or upload["user_id"] != user_id:  # another's upload is not shown to exist
            raise NotFound("upload not found")
        return upload

    @staticmethod
    def _check_task(conn: Any, bucket: str, task_id: UUID, user_id: UUID) -> None:
        task = one(conn, "SELECT poster_id, worker_id, state FROM tasks WHERE id = %s", (task_id,))
        if task is None:
            raise NotFound("task not found")
        if bucket == "proofs":
            if task["worker_id"] != user_id:
                raise Forbidden("only the task's worker uploads its proof")
            if task["state"] != "ACCEPTED":
                raise Conflict(f"proof photos are uploaded while the task is ACCEPTED; it is {task['state']}")
        elif user_id not in (task["poster_id"], task["worker_id"]):
            raise Forbidden("only the task's poster or worker uploads its photos")

    def _fetch_and_check(self, upload: dict[str, Any]) -> tuple[CheckedImage, bytes]:
        """The stored object, measured against the announcement, decoded and hashed."""
        key, declared = upload["storage_key"], upload["file_size_bytes"]
        storage = self.s.storage
        with _storage_errors():
            info = storage.head(key)
        if info is None:
            raise Conflict("nothing was uploaded yet: PUT the file to upload_url first")
        refusal = None
        if info.size != declared:
            refusal = {"size": [f"{declared} bytes announced, {info.size} uploaded"]}
        elif info.content_type != upload["content_type"]:
            refusal = {"content_type": [f"{upload['content_type']} announced, {info.content_type} uploaded"]}
        image: CheckedImage | None = None
        data = b""
        if refusal is None:
            with _storage_errors():
                data = storage.get(key)
            try:
                image = check_image(data, max_bytes=BUCKETS[upload["bucket"]].max_bytes)
            except (ValidationError, PayloadTooLarge) as err:
                refusal = err.details or {"file": ["must be an image that decodes"]}
            else:
                if image.content_type != upload["content_type"] or image.size != declared:
                    refusal = {"content_type": [f"{upload['content_type']} announced, the file is "
                                                f"{image.content_type}"]}
        if refusal is not None or image is None:
            log.info("upload %s refused at confirm: %s", upload["id"], refusal)
            with _storage_errors():
                storage.delete(key)
            raise ValidationError("the uploaded file does not match the upload", details=refusal)
        return image, data

    @staticmethod
    def _owning_task(conn: Any, key: str, viewer_id: UUID) -> UUID:
        """The task whose photo `key` is: an upload not attached yet belongs to its uploader
        alone; an attached one is read while its proof photo or evidence row exists."""
        upload = one(conn, "SELECT user_id, task_id, state FROM uploads WHERE storage_key = %s", (key,))
        if upload is not None and upload["state"] != "ATTACHED" and upload["task_id"] is not None:
            if upload["user_id"] != viewer_id and audit.admin_role(conn, viewer_id) is None:
                raise NotFound("no such object")
            pending: UUID = upload["task_id"]
            return pending
        for query in ("""SELECT p.task_id FROM proof_photos pp JOIN proofs p ON p.id = pp.proof_id
                          WHERE pp.storage_key = %s AND pp.deleted_at IS NULL""",
                      "SELECT task_id FROM evidence WHERE storage_key = %s AND task_id IS NOT NULL"):
            row = one(conn, query, (key,))
            if row is not None:
                found: UUID = row["task_id"]
                return found
        raise NotFound("no such object")


def _check_key(key: str) -> None:
    """A key from a URL path that no upload can have is simply not there."""
    if len(key) > 500 or "\x00" in key:
        raise NotFound("no such object")


@contextmanager
def _storage_errors() -> Iterator[None]:
    """The object store being unreachable is a 503, never a 500."""
    from botocore.exceptions import BotoCoreError, ClientError

    try:
        yield
    except (BotoCoreError, ClientError, OSError) as exc:
        log.warning("object storage failed: %s", exc)
        raise Unavailable("object storage is unavailable; try again shortly") from exc
