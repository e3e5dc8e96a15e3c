"""Proof routes: photo upload, submission, the poster's review, reading proofs and photos."""

from __future__ import annotations

import io
import uuid

from tests.api.conftest import data, error
from tests.api.world import JPEG


def test_full_flow_over_the_api(world):
    task, proof = world.submitted(price=5000)
    assert proof["state"] == "SUBMITTED" and proof["photos"][0]["url"].startswith("/api/proofs/photos/")
    photo = world.client.get(proof["photos"][0]["url"], headers=world.ph)
    assert photo.status_code == 200 and photo.data == JPEG and photo.mimetype == "image/jpeg"
    assert world.client.get(proof["photos"][0]["url"], headers=world.sh).status_code == 403
    # Completing before the proof is approved surfaces INV-3's code.
    response = world.client.post(f"/api/tasks/{task['id']}/complete", headers=world.ph)
    assert response.status_code == 409 and error(response)["code"] == "HX301"
    assert error(world.client.post(f"/api/proofs/{proof['id']}/accept", headers=world.wh))["code"] == "FORBIDDEN"
    review = data(world.client.post(f"/api/proofs/{proof['id']}/accept", headers=world.ph))
    assert review["state"] == "ACCEPTED" and review["task"]["state"] == "COMPLETED"
    assert review["escrow"]["state"] == "RELEASED" and review["xp_awarded"]["base_xp"] == 50
    assert world.send_money(review["escrow"]["id"]) == {"transferred": 4250, "refunded": 0}
    done = data(world.client.post(f"/api/tasks/{task['id']}/complete", headers=world.ph))
    assert done["task"]["state"] == "COMPLETED" and done["xp_awarded"]["effective_xp"] == 50
    escrow = data(world.client.get(f"/api/tasks/{task['id']}/escrow", headers=world.wh))
    assert escrow["state"] == "RELEASED" and escrow["stripe_transfer_id"] == world.fake.transfers[0]["id"]
    assert world.fake.money_out(escrow["id"]) == {"transferred": 4250, "refunded": 0}
    latest = data(world.client.get(f"/api/tasks/{task['id']}/proof", headers=world.ph))
    assert latest["id"] == proof["id"] and latest["reviewed_by"] == world.poster["id"]
    # Releasing again returns the escrow as it is; refunding it is a conflict.
    assert data(world.client.post(f"/api/escrows/{escrow['id']}/release", headers=world.ph))["state"] == "RELEASED"
    assert world.client.post(f"/api/escrows/{escrow['id']}/refund", json={}, headers=world.ph).status_code == 409


def test_proof_submission_errors(world):
    task = world.accepted()
    no_photo = world.client.post(f"/api/tasks/{task['id']}/proof", json={"description": "done"}, headers=world.wh)
    assert no_photo.status_code in (400, 409)
    assert world.client.post(f"/api/tasks/{task['id']}/proof", json={}, headers=world.wh).status_code == 400
    bad = world.client.post(f"/api/tasks/{task['id']}/proof/photos", headers=world.wh,
                            data={"file": (io.BytesIO(b"GIF89a..."), "x.gif")}, content_type="multipart/form-data")
    assert bad.status_code == 400 and error(bad)["code"] == "VALIDATION_ERROR"
    assert world.client.post(f"/api/tasks/{task['id']}/proof/photos", headers=world.wh,
                             data={}, content_type="multipart/form-data").status_code == 400
    stranger = world.client.post(f"/api/tasks/{task['id']}/proof/photos", headers=world.sh,
                                 data={"file": (io.BytesIO(JPEG), "x.jpg")}, content_type="multipart/form-data")
    assert stranger.status_code == 403
    assert world.client.post(f"/api/tasks/{task['id']}/proof/photos", headers=world.wh,
                             data={"file": (io.BytesIO(JPEG), "x.jpg")},
                             content_type="multipart/form-data").status_code == 201
    wrong_keys = world.client.post(f"/api/tasks/{task['id']}/proof", headers=world.wh,
                                   json={"description": "done", "photo_keys": ["proofs/elsewhere/1.jpg"]})
    assert wrong_keys.status_code == 400


def test_reject_and_read_rules(world):
    task, proof = world.submitted()
    assert world.client.post(f"/api/proofs/{proof['id']}/reject", json={"reason": "no"}).status_code == 401
    assert world.client.post(f"/api/proofs/{proof['id']}/reject", json={"reason": "no"},
                             headers=world.wh).status_code == 403
    long = world.client.post(f"/api/proofs/{proof['id']}/reject", json={"reason": "x" * 1001}, headers=world.ph)
    assert long.status_code == 400 and "reason" in error(long)["details"]
    assert world.client.post(f"/api/proofs/{uuid.uuid4()}/reject", json={"reason": "no"},
                             headers=world.ph).status_code == 404
    out = data(world.client.post(f"/api/proofs/{proof['id']}/reject", json={"reason": "Blurry"}, headers=world.ph))
    assert out["rejection_reason"] == "Blurry" and out["task"]["state"] == "ACCEPTED"
    again = world.client.post(f"/api/proofs/{proof['id']}/accept", headers=world.ph)
    assert again.status_code == 409 and error(again)["code"] == "CONFLICT"
    assert world.client.get(f"/api/tasks/{task['id']}/proof", headers=world.sh).status_code == 403
    assert world.client.get(f"/api/tasks/{task['id']}/proof").status_code == 401
    assert world.client.get(f"/api/proofs/photos/{proof['photos'][0]['id']}").status_code == 401


def test_photo_upload_limits(world):
    task = world.accepted()
    for n in range(5):
        response = world.client.post(f"/api/tasks/{task['id']}/proof/photos", headers=world.wh,
                                     data={"file": (io.BytesIO(JPEG), f"{n}.jpg")}, content_type="multipart/form-data")
        assert data(response)["sequence_number"] == n + 1
    sixth = world.client.post(f"/api/tasks/{task['id']}/proof/photos", headers=world.wh,
                              data={"file": (io.BytesIO(JPEG), "6.jpg")}, content_type="multipart/form-data")
    assert sixth.status_code == 400
    bad_time = world.client.post(f"/api/tasks/{task['id']}/proof/photos", headers=world.wh,
                                 data={"file": (io.BytesIO(JPEG), "x.jpg"), "capture_time": "yesterday"},
                                 content_type="multipart/form-data")
    assert bad_time.status_code == 400 and "capture_time" in str(error(bad_time)["details"])
