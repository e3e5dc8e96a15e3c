"""/api/uploads with the embedded default, local storage: the same two calls as with S3, the
PUT going to the API, which refuses what S3 would refuse (expired, another type or length,
a forged signature). The S3 side is tests/api/test_uploads_s3.py."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.api import uploading
from tests.api.conftest import data, error
from tests.images import JPEG, PNG


def storage(world: Any) -> Any:
    return world.client.application.extensions["hustlexp"].services.storage


def target_for(world: Any, task: dict[str, Any], **kw: Any) -> dict[str, Any]:
    target: dict[str, Any] = data(uploading.announce(world.client, world.wh, "proofs", task["id"], **kw))
    return target


# -- announce ------------------------------------------------------------------------------------

def test_announce_returns_a_presigned_put_and_a_pending_upload(world: Any, conn: Any) -> None:
    task = world.accepted()
    response = uploading.announce(world.client, world.wh, "proofs", task["id"])
    assert response.status_code == 201
    target = data(response)
    upload = target["upload"]
    assert (upload["bucket"], upload["state"], upload["file_size_bytes"]) == ("proofs", "PENDING", len(JPEG))
    assert upload["storage_key"].startswith(f"proofs/{task['id']}/") and upload["storage_key"].endswith(".jpg")
    assert target["method"] == "PUT"
    assert target["headers"] == {"Content-Type": "image/jpeg", "Content-Length": str(len(JPEG))}
    query = parse_qs(urlsplit(target["upload_url"]).query)
    assert 0 < int(query["expires"][0]) - time.time() <= 900
    row = conn.execute("SELECT state, user_id FROM uploads WHERE id = %s", (upload["id"],)).fetchone()
    assert (row["state"], str(row["user_id"])) == ("PENDING", world.worker["id"])


@pytest.mark.parametrize(("body", "field"), [
    ({"bucket": "videos"}, "bucket"),
    ({"content_type": "application/pdf"}, "content_type"),
    ({"bucket": "messages", "content_type": "image/heic"}, "content_type"),
    ({"size": 0}, "size"),
    ({"size": 10 * 1024 * 1024 + 1}, "size"),
    ({"bucket": "messages", "size": 5 * 1024 * 1024 + 1}, "size"),
    ({"task_id": None}, "task_id"),
    ({"bucket": "avatars"}, "task_id"),
])
def test_announce_refuses_what_the_bucket_does_not_take(world: Any, conn: Any, body: dict[str, Any],
                                                         field: str) -> None:
    task = world.accepted()
    payload = {"bucket": "proofs", "content_type": "image/jpeg", "size": 100, "task_id": task["id"]} | body
    response = world.client.post("/api/uploads", json={k: v for k, v in payload.items() if v is not None},
                                 headers=world.wh)
    assert response.status_code == 400, response.get_json()
    err = error(response)
    assert err["code"] == "VALIDATION_ERROR" and field in err["details"]
    assert conn.execute("SELECT count(*) AS n FROM uploads").fetchone()["n"] == 0


def test_announce_checks_who_may_upload_for_the_task(world: Any) -> None:
    task = world.accepted()
    assert uploading.announce(world.client, world.sh, "messages", task["id"]).status_code == 403
    assert uploading.announce(world.client, world.ph, "proofs", task["id"]).status_code == 403
    assert uploading.announce(world.client, world.ph, "evidence", task["id"]).status_code == 201
    missing = uploading.announce(world.client, world.wh, "proofs", "00000000-0000-4000-8000-000000000000")
    assert missing.status_code == 404
    open_task = world.funded()
    assert uploading.announce(world.client, world.wh, "proofs", open_task["id"]).status_code == 403


def test_proof_photos_are_announced_only_while_the_task_is_accepted(world: Any) -> None:
    task, _ = world.submitted()
    response = uploading.announce(world.client, world.wh, "proofs", task["id"])
    assert response.status_code == 409 and error(response)["code"] == "CONFLICT"


# -- the PUT (the API stands in for the store) ------------------------------------------------------

def test_a_confirmed_proof_upload_becomes_a_proof_photo(world: Any, conn: Any) -> None:
    task = world.accepted()
    out = uploading.upload(world.client, world.wh, "proofs", task["id"])
    assert out["upload"]["state"] == "ATTACHED"
    assert out["upload"]["checksum_sha256"] == out["photo"]["checksum_sha256"]
    assert out["photo"]["storage_key"] == out["upload"]["storage_key"]
    proof = data(world.client.get(f"/api/tasks/{task['id']}/proof", headers=world.ph))
    assert [p["storage_key"] for p in proof["photos"]] == [out["upload"]["storage_key"]]
    served = world.client.get(out["photo"]["url"], headers=world.ph)
    assert served.status_code == 200 and served.data == JPEG
    # Confirming again changes nothing.
    again = data(uploading.confirm(world.client, world.wh, out["upload"]["id"]))
    assert again["upload"]["state"] == "ATTACHED" and again["photo"] is None
    assert conn.execute("SELECT count(*) AS n FROM proof_photos").fetchone()["n"] == 1


def test_the_put_is_refused_with_another_type_or_length(world: Any) -> None:
    task = world.accepted()
    target = target_for(world, task)
    assert uploading.put(world.client, target, JPEG, {"Content-Type": "image/png"}) == 403
    assert uploading.put(world.client, target, JPEG + b"\0" * 10) == 403
    assert uploading.put(world.client, target, JPEG[:-10]) == 403
    assert not storage(world).exists(target["upload"]["storage_key"])
    assert uploading.put(world.client, target, JPEG) == 200
    assert storage(world).get(target["upload"]["storage_key"]) == JPEG


def test_an_expired_or_forged_upload_url_is_refused(world: Any) -> None:
    task = world.accepted()
    target = target_for(world, task)
    key = target["upload"]["storage_key"]
    path = urlsplit(target["upload_url"]).path
    past = int(time.time()) - 1
    expired = {**target, "upload_url": f"{path}?expires={past}&signature="
                                       f"{storage(world).sign('PUT', key, past, 'image/jpeg', len(JPEG))}"}
    assert uploading.put(world.client, expired, JPEG) == 403
    later = int(time.time()) + 600
    forged = {**target, "upload_url": f"{path}?expires={later}&signature={'0' * 64}"}
    assert uploading.put(world.client, forged, JPEG) == 403
    assert not storage(world).exists(key)


# -- confirm ---------------------------------------------------------------------------------------

def test_confirm_before_the_put_is_409_and_another_users_upload_is_404(world: Any) -> None:
    task = world.accepted()
    target = target_for(world, task)
    response = uploading.confirm(world.client, world.wh, target["upload"]["id"])
    assert response.status_code == 409 and error(response)["code"] == "CONFLICT"
    assert uploading.confirm(world.client, world.ph, target["upload"]["id"]).status_code == 404


def test_confirm_after_the_upload_expired_is_409(world: Any, services: Any) -> None:
    task = world.accepted()
    target = target_for(world, task)
    assert uploading.put(world.client, target, JPEG) == 200
    real = services.clock
    services.clock = lambda: real() + timedelta(minutes=21)
    try:
        response = uploading.confirm(world.client, world.wh, target["upload"]["id"])
    finally:
        services.clock = real
    assert response.status_code == 409 and error(response)["code"] == "CONFLICT"


def test_a_file_that_is_not_an_image_is_refused_at_confirm_and_deleted(world: Any, conn: Any) -> None:
    task = world.accepted()
    fake = b"\xff\xd8\xff<?php echo 1; ?>" + b"\0" * 100
    target = target_for(world, task, size=len(fake))
    assert uploading.put(world.client, target, fake) == 200
    response = uploading.confirm(world.client, world.wh, target["upload"]["id"])
    assert response.status_code == 400 and error(response)["code"] == "VALIDATION_ERROR"
    assert not storage(world).exists(target["upload"]["storage_key"])
    assert conn.execute("SELECT state FROM uploads").fetchone()["state"] == "PENDING"
    assert conn.execute("SELECT count(*) AS n FROM proof_photos").fetchone()["n"] == 0


def test_an_image_of_another_type_than_announced_is_refused(world: Any) -> None:
    task = world.accepted()
    target = target_for(world, task, size=len(PNG))  # announced as JPEG
    assert uploading.put(world.client, target, PNG) == 200
    response = uploading.confirm(world.client, world.wh, target["upload"]["id"])
    assert response.status_code == 400 and "content_type" in error(response)["details"]


# -- reads -----------------------------------------------------------------------------------------

def test_private_photos_are_read_through_short_lived_signed_urls_for_parties(world: Any, make_admin: Any) -> None:
    task = world.accepted()
    key = uploading.upload(world.client, world.wh, "proofs", task["id"])["upload"]["storage_key"]
    admin, admin_headers = world.stranger, world.sh
    for headers in (world.ph, world.wh):
        signed = data(world.client.get("/api/uploads/url", query_string={"key": key}, headers=headers))
        assert signed["expires_at"] is not None
        url = urlsplit(signed["url"])
        assert world.client.get(f"{url.path}?{url.query}").data == JPEG
        assert world.client.get(url.path).status_code == 403  # unsigned
    assert world.client.get("/api/uploads/url", query_string={"key": key}, headers=admin_headers).status_code == 403
    make_admin(admin["id"])
    assert world.client.get("/api/uploads/url", query_string={"key": key}, headers=admin_headers).status_code == 200
    missing = world.client.get("/api/uploads/url", query_string={"key": "proofs/x/y.jpg"}, headers=world.ph)
    assert missing.status_code == 404


def test_an_expired_download_url_is_refused(world: Any) -> None:
    task = world.accepted()
    key = uploading.upload(world.client, world.wh, "proofs", task["id"])["upload"]["storage_key"]
    past = int(time.time()) - 1
    signature = storage(world).sign("GET", key, past)
    assert world.client.get(f"/storage/objects/{key}?expires={past}&signature={signature}").status_code == 403


def test_an_unattached_upload_is_readable_by_its_uploader_only(world: Any) -> None:
    task = world.accepted()
    key = uploading.upload(world.client, world.wh, "messages", task["id"])["upload"]["storage_key"]
    assert world.client.get("/api/uploads/url", query_string={"key": key}, headers=world.wh).status_code == 200
    assert world.client.get("/api/uploads/url", query_string={"key": key}, headers=world.ph).status_code == 404


def test_an_avatar_is_public_once_confirmed(world: Any, conn: Any) -> None:
    target = data(uploading.announce(world.client, world.wh, "avatars", content_type="image/png", size=len(PNG)))
    incoming = target["upload"]["storage_key"]
    assert incoming.startswith(f"incoming/avatars/{world.worker['id']}/")
    assert uploading.put(world.client, target, PNG) == 200
    # Unchecked bytes are not public: the waiting object needs a signed URL like any private one.
    assert world.client.get(f"/storage/objects/{incoming}").status_code == 403
    out = data(uploading.confirm(world.client, world.wh, target["upload"]["id"]))
    assert out["upload"]["state"] == "ATTACHED"
    assert out["upload"]["storage_key"] == incoming.removeprefix("incoming/")
    assert not storage(world).exists(incoming)
    assert out["avatar_url"] is not None
    me = conn.execute("SELECT avatar_url FROM users WHERE id = %s", (world.worker["id"],)).fetchone()
    assert me["avatar_url"] == out["avatar_url"]
    public = world.client.get(urlsplit(out["avatar_url"]).path)  # no token, no signature
    assert public.status_code == 200 and public.data == PNG and public.mimetype == "image/png"
    signed = data(world.client.get("/api/uploads/url", query_string={"key": out["upload"]["storage_key"]},
                                   headers=world.sh))
    assert signed == {"url": out["avatar_url"], "expires_at": None}


# -- disputes --------------------------------------------------------------------------------------

def test_dispute_evidence_must_be_the_openers_confirmed_evidence_uploads(world: Any, conn: Any) -> None:
    task, _ = world.submitted()
    mine = uploading.upload(world.client, world.ph, "evidence", task["id"])["upload"]["storage_key"]
    theirs = uploading.upload(world.client, world.wh, "evidence", task["id"])["upload"]["storage_key"]
    body = {"reason": "QUALITY_ISSUE", "description": "The shelf wobbles"}
    for keys in ([theirs], [mine, "evidence/made/up.jpg"], [mine, mine]):
        refused = world.client.post(f"/api/tasks/{task['id']}/dispute", json=body | {"evidence_urls": keys},
                                    headers=world.ph)
        assert refused.status_code == 400 and "evidence_urls" in error(refused)["details"]
    assert conn.execute("SELECT count(*) AS n FROM disputes").fetchone()["n"] == 0
    opened = world.client.post(f"/api/tasks/{task['id']}/dispute", json=body | {"evidence_urls": [mine]},
                               headers=world.ph)
    assert opened.status_code == 201, opened.get_json()
    dispute = data(world.client.get(f"/api/tasks/{task['id']}/dispute", headers=world.wh))
    assert [(e["storage_key"], e["submitted_by"], e["evidence_type"]) for e in dispute["evidence"]] == [
        (mine, world.poster["id"], "PHOTO")]
    # The evidence is readable by both parties through a signed URL.
    assert world.client.get("/api/uploads/url", query_string={"key": mine}, headers=world.wh).status_code == 200


@pytest.mark.parametrize("key", ["avatars/../../etc/passwd", "avatars/%00.jpg", "avatars/" + "x" * 600,
                                 "avatars/missing.jpg"])
def test_local_objects_that_no_upload_has_are_404(world: Any, key: str) -> None:
    assert world.client.get(f"/storage/objects/{key}").status_code == 404
    assert world.client.put(f"/storage/objects/{key}?expires=1&signature=x", data=b"x",
                            content_type="image/jpeg").status_code in (403, 404)


def test_a_signature_of_any_text_is_refused_not_a_crash(world: Any) -> None:
    task = world.accepted()
    key = uploading.upload(world.client, world.wh, "proofs", task["id"])["upload"]["storage_key"]
    assert world.client.get(f"/storage/objects/{key}?expires=9999999999&signature=%C2%BD%F0%95%96%88s"
                            ).status_code == 403
