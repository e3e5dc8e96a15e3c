"""/api/uploads against a real S3 API over HTTP (moto's standalone server, tests/fakes/s3_server.py),
boto3 on both sides: the app's S3Storage and the test's own client looking into the bucket.

moto keeps whatever a PUT sends (it checks neither a presigned URL's expiry nor its signed
headers, as AWS would), so these tests also show the server's own checks at confirm hold:
an object of another type or size than announced, or confirmed after the upload expired,
is never attached. A second app on the same database and bucket (a second API host) reads
and confirms what the first one handed out."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from flask import Flask

from hustlexp.app import close_app, create_app
from hustlexp.services.payments import PaymentsGateway
from tests.api import uploading
from tests.api.conftest import WEBHOOK_SECRET, api_settings, data, error
from tests.fakes import s3_server
from tests.fakes.stripe_fake import FakeStripe
from tests.images import JPEG


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    with s3_server.s3_server() as endpoint:
        yield endpoint


@pytest.fixture
def bucket(s3_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> str:
    for name, value in s3_server.CREDENTIALS.items():
        monkeypatch.setenv(name, value)
    name = f"hustlexp-{uuid.uuid4().hex[:12]}"
    s3_server.client(s3_endpoint).create_bucket(Bucket=name)
    return name


@pytest.fixture
def s3(s3_endpoint: str, bucket: str) -> Any:
    """The test's own boto3 client on the store, to look into the bucket."""
    return s3_server.client(s3_endpoint)


def s3_app(db_url: str, tmp_path: Any, stripe_fake: FakeStripe, endpoint: str, bucket: str, name: str) -> Flask:
    gateway = PaymentsGateway("sk_test_api", http_client=stripe_fake.http_client(), webhook_secret=WEBHOOK_SECRET)
    # Each host its own local directory: nothing may be shared but the database and the bucket.
    settings = api_settings(db_url, tmp_path / name, HUSTLEXP_STORAGE="s3", HUSTLEXP_S3_BUCKET=bucket,
                            HUSTLEXP_S3_ENDPOINT_URL=endpoint)
    application = create_app(settings, payments=gateway)
    application.config["TESTING"] = True
    return application


@pytest.fixture
def app(db_url: str, tmp_path: Any, firebase_certs: str, stripe_fake: FakeStripe, s3_endpoint: str,
        bucket: str) -> Iterator[Flask]:
    """The API test app (tests/api/conftest.py), with storage on the S3 server."""
    application = s3_app(db_url, tmp_path, stripe_fake, s3_endpoint, bucket, "host-a")
    yield application
    close_app(application)


@pytest.fixture
def second_host(db_url: str, tmp_path: Any, stripe_fake: FakeStripe, s3_endpoint: str,
                bucket: str) -> Iterator[Any]:
    application = s3_app(db_url, tmp_path, stripe_fake, s3_endpoint, bucket, "host-b")
    yield application.test_client()
    close_app(application)


def objects(s3: Any, bucket: str) -> list[str]:
    return [o["Key"] for o in s3.list_objects_v2(Bucket=bucket).get("Contents", [])]


def announced(world: Any, task: dict[str, Any], **kw: Any) -> dict[str, Any]:
    target: dict[str, Any] = data(uploading.announce(world.client, world.wh, "proofs", task["id"], **kw))
    return target


def test_the_presigned_put_binds_type_and_length_and_expires_soon(world: Any, bucket: str) -> None:
    task = world.accepted()
    target = announced(world, task)
    url = urlsplit(target["upload_url"])
    query = parse_qs(url.query)
    assert url.path == f"/{bucket}/{target['upload']['storage_key']}"
    assert query["X-Amz-Algorithm"] == ["AWS4-HMAC-SHA256"]
    assert query["X-Amz-Expires"] == ["900"]
    assert set(query["X-Amz-SignedHeaders"][0].split(";")) >= {"content-length", "content-type", "host"}


def test_a_proof_photo_goes_straight_to_the_bucket_and_is_read_by_signed_url(world: Any, s3: Any,
                                                                              bucket: str) -> None:
    task = world.accepted()
    out = uploading.upload(world.client, world.wh, "proofs", task["id"])
    key = out["upload"]["storage_key"]
    stored = s3.get_object(Bucket=bucket, Key=key)
    assert stored["Body"].read() == JPEG and stored["ContentType"] == "image/jpeg"
    assert out["photo"]["storage_key"] == key
    signed = data(world.client.get("/api/uploads/url", query_string={"key": key}, headers=world.ph))
    assert "X-Amz-Signature=" in signed["url"] and parse_qs(urlsplit(signed["url"]).query)["X-Amz-Expires"] == ["3600"]
    assert requests.get(signed["url"], timeout=10).content == JPEG
    assert world.client.get("/api/uploads/url", query_string={"key": key}, headers=world.sh).status_code == 403


def test_an_object_of_another_content_type_is_refused_and_deleted(world: Any, s3: Any, bucket: str,
                                                                  conn: Any) -> None:
    task = world.accepted()
    target = announced(world, task)
    headers = {**target["headers"], "Content-Type": "image/png"}
    assert uploading.put(world.client, target, JPEG, headers) == 200  # moto takes it; AWS would not
    response = uploading.confirm(world.client, world.wh, target["upload"]["id"])
    assert response.status_code == 400
    assert "content_type" in error(response)["details"]
    assert objects(s3, bucket) == []
    assert conn.execute("SELECT count(*) AS n FROM proof_photos").fetchone()["n"] == 0
    assert conn.execute("SELECT state FROM uploads").fetchone()["state"] == "PENDING"


def test_an_object_larger_than_announced_is_refused_and_deleted(world: Any, s3: Any, bucket: str,
                                                                conn: Any) -> None:
    task = world.accepted()
    target = announced(world, task)
    bigger = JPEG + b"\0" * 4096
    headers = {**target["headers"], "Content-Length": str(len(bigger))}
    assert uploading.put(world.client, target, bigger, headers) == 200
    response = uploading.confirm(world.client, world.wh, target["upload"]["id"])
    assert response.status_code == 400
    assert error(response)["details"] == {"size": [f"{len(JPEG)} bytes announced, {len(bigger)} uploaded"]}
    assert objects(s3, bucket) == []
    assert conn.execute("SELECT count(*) AS n FROM proof_photos").fetchone()["n"] == 0


def test_an_upload_past_its_presign_is_never_attached(world: Any, services: Any, conn: Any) -> None:
    task = world.accepted()
    target = announced(world, task)
    real = services.clock
    services.clock = lambda: real() + timedelta(seconds=900) + timedelta(minutes=6)
    try:
        assert uploading.put(world.client, target, JPEG) == 200  # moto ignores X-Amz-Expires
        response = uploading.confirm(world.client, world.wh, target["upload"]["id"])
        assert response.status_code == 409 and error(response)["code"] == "CONFLICT"
        # Retention then removes the intent and the object the late PUT left.
        services.clock = lambda: real() + timedelta(hours=1)
        assert services.retention.purge_upload_intents().unwrap()["removed"] == 1
    finally:
        services.clock = real
    assert conn.execute("SELECT count(*) AS n FROM proof_photos").fetchone()["n"] == 0
    assert conn.execute("SELECT count(*) AS n FROM uploads").fetchone()["n"] == 0
    assert not services.storage.exists(target["upload"]["storage_key"])


def test_a_second_api_host_confirms_and_serves_what_the_first_handed_out(world: Any, second_host: Any,
                                                                         s3: Any, bucket: str) -> None:
    task = world.accepted()
    target = announced(world, task)  # host A
    assert uploading.put(world.client, target, JPEG) == 200
    confirmed = data(uploading.confirm(second_host, world.wh, target["upload"]["id"]))  # host B
    photo = confirmed["photo"]
    assert photo is not None and objects(s3, bucket) == [photo["storage_key"]]
    # Host A serves it (the multipart-era route reads through storage) and B signs a URL for it.
    served = world.client.get(photo["url"], headers=world.ph)
    assert served.status_code == 200 and served.data == JPEG
    signed = data(second_host.get("/api/uploads/url", query_string={"key": photo["storage_key"]}, headers=world.ph))
    assert requests.get(signed["url"], timeout=10).content == JPEG
    # And a multipart upload through B lands in the bucket for A to serve.
    multipart = second_host.post(f"/api/tasks/{task['id']}/proof/photos", headers=world.wh,
                                 data={"file": (io.BytesIO(JPEG), "photo")}, content_type="multipart/form-data")
    assert multipart.status_code == 201, multipart.get_json()
    second = data(multipart)
    assert second["storage_key"] in objects(s3, bucket)
    assert world.client.get(f"/api/proofs/photos/{second['id']}", headers=world.ph).data == JPEG


def test_an_avatar_lands_under_the_public_prefix_only_once_confirmed(world: Any, s3: Any, bucket: str,
                                                                     conn: Any) -> None:
    target = data(uploading.announce(world.client, world.wh, "avatars"))
    assert uploading.put(world.client, target, JPEG) == 200
    assert objects(s3, bucket) == [target["upload"]["storage_key"]]
    assert target["upload"]["storage_key"].startswith("incoming/")
    out = data(uploading.confirm(world.client, world.wh, target["upload"]["id"]))
    key = out["upload"]["storage_key"]
    assert objects(s3, bucket) == [key] and key.startswith(f"avatars/{world.worker['id']}/")
    assert out["avatar_url"] == f"{s3.meta.endpoint_url}/{bucket}/{key}"
    assert conn.execute("SELECT avatar_url FROM users WHERE id = %s", (world.worker["id"],)).fetchone()[
        "avatar_url"] == out["avatar_url"]
