"""ProofService: photos checked by content, submission, review, the completion chain."""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta

from tests.images import HEIC
from tests.services import flows
from tests.services.flows import JPEG, PNG


def test_upload_checks_content_and_records_our_checksum(services, stripe_fake, tmp_path):
    ids = flows.accepted_task(services, stripe_fake)
    photo = services.proofs.upload_photo(ids["task"], ids["worker"], PNG).unwrap()
    assert photo["content_type"] == "image/png" and photo["sequence_number"] == 1
    assert photo["checksum_sha256"] == hashlib.sha256(PNG).hexdigest()
    # proofs/{task}/{proof}/{n}-{random}.{ext}
    assert re.fullmatch(rf"proofs/{ids['task']}/{photo['proof_id']}/1-[0-9a-f]{{12}}\.png", photo["storage_key"])
    assert services.storage.get(photo["storage_key"]) == PNG
    heic = services.proofs.upload_photo(ids["task"], ids["worker"], HEIC).unwrap()
    assert heic["content_type"] == "image/heic" and heic["sequence_number"] == 2


def test_upload_refuses_non_images_oversize_and_a_sixth_photo(services, stripe_fake):
    ids = flows.accepted_task(services, stripe_fake)
    assert services.proofs.upload_photo(ids["task"], ids["worker"], b"%PDF-1.7 not a photo").code == \
        "VALIDATION_ERROR"
    assert services.proofs.upload_photo(ids["task"], ids["worker"], b"").code == "VALIDATION_ERROR"
    big = JPEG + bytes(10 * 1024 * 1024)
    assert services.proofs.upload_photo(ids["task"], ids["worker"], big).code == "PAYLOAD_TOO_LARGE"
    # Magic bytes are not an image: the whole file must decode.
    assert services.proofs.upload_photo(ids["task"], ids["worker"], b"\xff\xd8\xff<?php system($_GET[1]); ?>"
                                        ).code == "VALIDATION_ERROR"
    assert services.proofs.upload_photo(ids["task"], ids["worker"], JPEG[: len(JPEG) // 2]).code == \
        "VALIDATION_ERROR"
    for _ in range(5):
        services.proofs.upload_photo(ids["task"], ids["worker"], JPEG).unwrap()
    assert services.proofs.upload_photo(ids["task"], ids["worker"], JPEG).code == "VALIDATION_ERROR"
    assert flows.row(services, "SELECT count(*) AS n FROM proof_photos")["n"] == 5


def test_only_the_assigned_worker_uploads_and_submits(services, stripe_fake):
    ids = flows.accepted_task(services, stripe_fake)
    assert services.proofs.upload_photo(ids["task"], ids["poster"], JPEG).code == "FORBIDDEN"
    assert services.proofs.submit(ids["task"], ids["poster"], description="x").code == "FORBIDDEN"


def test_submit_needs_a_photo_and_a_description(services, stripe_fake):
    ids = flows.accepted_task(services, stripe_fake)
    services.proofs.create(ids["task"], ids["worker"]).unwrap()
    assert services.proofs.submit(ids["task"], ids["worker"], description="Done").code == "VALIDATION_ERROR"
    services.proofs.upload_photo(ids["task"], ids["worker"], JPEG).unwrap()
    assert services.proofs.submit(ids["task"], ids["worker"]).code == "VALIDATION_ERROR"
    assert services.proofs.submit(ids["task"], ids["worker"], description="x" * 2001).code == "VALIDATION_ERROR"


def test_submit_moves_task_and_sets_the_48h_review_deadline(services, stripe_fake):
    ids = flows.accepted_task(services, stripe_fake)
    out = flows.submit_proof(services, ids, photos=2)
    assert out["task"]["state"] == "PROOF_SUBMITTED" and out["proof"]["state"] == "SUBMITTED"
    proof = out["proof"]
    assert proof["review_deadline"] - proof["submitted_at"] == timedelta(hours=48)
    assert len(proof["photos"]) == 2
    # The proof and photos submit answers with are what a later read finds, field for field.
    assert proof == services.proofs.get_by_task_id(ids["task"], ids["worker"]).unwrap()
    note = flows.row(services, "SELECT user_id FROM notifications WHERE category = 'PROOF_SUBMITTED'")
    assert note["user_id"] == ids["poster"]
    assert services.proofs.submit(ids["task"], ids["worker"], description="again").code == "CONFLICT"


def test_accept_runs_the_whole_chain_in_one_go(services, stripe_fake):
    ids = flows.submitted_task(services, stripe_fake, price=4500)
    out = services.proofs.accept(ids["proof"], ids["poster"]).unwrap()
    assert out["state"] == "ACCEPTED" and out["reviewed_by"] == ids["poster"]
    assert out["task"]["state"] == "COMPLETED" and out["escrow"]["state"] == "RELEASED"
    assert out["xp_awarded"]["base_xp"] == 45
    assert stripe_fake.money_out(str(ids["escrow"])) == {"transferred": 3825, "refunded": 0}
    escrow = services.escrows.get_by_id(ids["escrow"]).unwrap()
    assert escrow["stripe_transfer_id"] == stripe_fake.transfers[0]["id"]
    assert stripe_fake.transfers[0]["destination"].startswith("acct_")
    xp = flows.row(services, "SELECT * FROM xp_ledger WHERE escrow_id = %s", ids["escrow"])
    assert xp["user_id"] == ids["worker"]
    badge = flows.row(services, "SELECT badge_type FROM badges WHERE user_id = %s AND badge_type = 'first-task'",
                      ids["worker"])
    assert badge is not None


def test_review_is_for_the_poster_of_a_submitted_proof_only(services, stripe_fake):
    ids = flows.submitted_task(services, stripe_fake)
    assert services.proofs.accept(ids["proof"], ids["worker"]).code == "FORBIDDEN"
    assert services.proofs.reject(ids["proof"], flows.user(services), "no").code == "FORBIDDEN"
    assert services.proofs.reject(ids["proof"], ids["poster"], "").code == "VALIDATION_ERROR"
    assert services.proofs.reject(ids["proof"], ids["poster"], "x" * 1001).code == "VALIDATION_ERROR"
    services.proofs.accept(ids["proof"], ids["poster"]).unwrap()
    assert services.proofs.accept(ids["proof"], ids["poster"]).code == "CONFLICT"
    assert len(stripe_fake.transfers) == 1


def test_reject_sends_the_task_back_and_a_new_proof_can_follow(services, stripe_fake):
    ids = flows.submitted_task(services, stripe_fake)
    out = services.proofs.reject(ids["proof"], ids["poster"], "The shelf is not level").unwrap()
    assert out["state"] == "REJECTED" and out["rejection_reason"] == "The shelf is not level"
    assert out["task"]["state"] == "ACCEPTED"
    first = ids["proof"]
    flows.submit_proof(services, ids)
    assert ids["proof"] != first
    latest = services.proofs.get_by_task_id(ids["task"], ids["poster"]).unwrap()
    assert latest["id"] == ids["proof"] and latest["state"] == "SUBMITTED"
    assert services.proofs.get_by_id(first, ids["worker"]).unwrap()["state"] == "REJECTED"


def test_proof_reads_are_for_participants_and_admins(services, stripe_fake):
    ids = flows.submitted_task(services, stripe_fake)
    assert services.proofs.get_by_task_id(ids["task"], flows.user(services)).code == "FORBIDDEN"
    assert services.proofs.get_by_task_id(ids["task"], flows.admin(services)).ok
    photo_id = services.proofs.get_by_id(ids["proof"], ids["poster"]).unwrap()["photos"][0]["id"]
    data, content_type = services.proofs.read_photo(photo_id, ids["poster"]).unwrap()
    assert data == JPEG and content_type == "image/jpeg"
    fresh = flows.accepted_task(services, stripe_fake)
    assert services.proofs.get_by_task_id(fresh["task"], fresh["poster"]).code == "NOT_FOUND"


def test_auto_accept_after_48_hours_completes_and_pays(services, stripe_fake, clock):
    ids = flows.submitted_task(services, stripe_fake)
    assert services.proofs.auto_accept_due().unwrap()["accepted"] == 0
    clock.advance(hours=48, minutes=1)
    assert services.proofs.auto_accept_due().unwrap()["accepted"] == 1
    proof = services.proofs.get_by_id(ids["proof"]).unwrap()
    assert proof["state"] == "ACCEPTED" and proof["reviewed_by"] is None
    assert flows.row(services, "SELECT state FROM tasks WHERE id = %s", ids["task"])["state"] == "COMPLETED"
    assert len(stripe_fake.transfers) == 1
    assert services.proofs.auto_accept_due().unwrap()["due"] == 0
