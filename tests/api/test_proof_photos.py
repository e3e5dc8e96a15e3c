"""Proof photos: decoded before storing, EXIF read into the row, 413 over 10 MB, and a worker
whose submission was refused is never trapped: photos can be deleted or chosen at submit."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

from tests.api.conftest import data, error
from tests.images import HEIC, JPEG, PNG, image


def upload(world: Any, task_id: str, content: bytes, headers: dict[str, str] | None = None,
           **form: str) -> Any:
    return world.client.post(f"/api/tasks/{task_id}/proof/photos", headers=headers or world.wh,
                             data={"file": (io.BytesIO(content), "photo"), **form},
                             content_type="multipart/form-data")


def stored(app: Any, key: str) -> bool:
    return bool(app.extensions["hustlexp"].services.storage.exists(key))


def rows(conn: Any) -> list[dict[str, Any]]:
    return conn.execute("SELECT * FROM proof_photos ORDER BY sequence_number").fetchall()


def test_photo_over_10_mb_is_413_in_the_json_envelope(world: Any, conn: Any) -> None:
    task = world.accepted()
    response = upload(world, task["id"], JPEG + bytes(10 * 1024 * 1024))
    assert response.status_code == 413
    assert error(response)["code"] == "PAYLOAD_TOO_LARGE"
    assert rows(conn) == []


def test_body_over_the_request_limit_is_413_json(world: Any) -> None:
    task = world.accepted()
    response = upload(world, task["id"], bytes(56 * 1024 * 1024))
    assert response.status_code == 413
    assert error(response)["code"] == "PAYLOAD_TOO_LARGE"


def test_what_only_looks_like_an_image_is_refused(world: Any, conn: Any, tmp_path: Path) -> None:
    task = world.accepted()
    for fake in (b"\xff\xd8\xff<?php system($_GET['c']); ?>", b"\x89PNG\r\n\x1a\n" + bytes(300),
                 b"\x00\x00\x00\x18ftypheic" + bytes(100), JPEG[: len(JPEG) // 2]):
        response = upload(world, task["id"], fake)
        assert response.status_code == 400, fake[:12]
        assert "file" in error(response)["details"]
    assert rows(conn) == []
    assert not list((tmp_path / "uploads").rglob("*.*"))


def test_jpeg_png_and_heic_decode_and_exif_fills_the_row(world: Any, conn: Any) -> None:
    task = world.accepted()
    for content, kind in ((PNG, "image/png"), (HEIC, "image/heic")):
        assert data(upload(world, task["id"], content))["content_type"] == kind
    tagged = image("JPEG", taken="2026:05:01 10:20:30", offset="-04:00", gps=(40.7128, -74.006),
                   make="Apple", model="iPhone 15 Pro")
    photo = data(upload(world, task["id"], tagged, capture_time="2020-01-01T00:00:00Z"))
    assert photo["capture_time"].startswith("2026-05-01T14:20:30")  # the camera's, not the client's
    assert (photo["location_lat"], photo["location_lng"]) == (40.7128, -74.006)
    assert (photo["camera_make"], photo["camera_model"]) == ("Apple", "iPhone 15 Pro")
    row = rows(conn)[-1]
    assert float(row["location_lat"]) == 40.7128 and float(row["location_lng"]) == -74.006
    assert row["capture_time"].isoformat().startswith("2026-05-01T14:20:30")
    # No EXIF: the client's capture time is kept; no location.
    plain = data(upload(world, task["id"], JPEG, capture_time="2026-02-03T04:05:06Z"))
    assert plain["capture_time"].startswith("2026-02-03T04:05:06") and plain["location_lat"] is None


def test_the_database_refuses_a_location_out_of_range(world: Any, conn: Any) -> None:
    import psycopg
    import pytest

    task = world.accepted()
    photo = data(upload(world, task["id"], JPEG))
    for lat, lng in ((91, 0), (0, 181), (10, None)):
        with pytest.raises(psycopg.errors.CheckViolation), conn.transaction():
            conn.execute("UPDATE proof_photos SET location_lat = %s, location_lng = %s WHERE id = %s",
                         (lat, lng, photo["id"]))


def test_worker_deletes_a_pending_photo_and_its_file(world: Any, conn: Any, app: Any) -> None:
    task = world.accepted()
    first, second = (data(upload(world, task["id"], JPEG)) for _ in range(2))
    path = f"/api/tasks/{task['id']}/proof/photos/{first['id']}"
    for headers, status in ((world.ph, 403), (world.sh, 403), (None, 401)):
        assert world.client.delete(path, headers=headers).status_code == status
    assert stored(app, first["storage_key"])
    gone = world.client.delete(path, headers=world.wh)
    assert gone.status_code == 200 and data(gone) == {"id": first["id"], "deleted": True}
    assert not stored(app, first["storage_key"]) and stored(app, second["storage_key"])
    assert [str(r["id"]) for r in rows(conn)] == [second["id"]]
    assert world.client.delete(path, headers=world.wh).status_code == 404
    # The freed slot is reused, under a new key.
    again = data(upload(world, task["id"], JPEG))
    assert again["sequence_number"] == 1 and again["storage_key"] != first["storage_key"]
    # Once submitted, photos stay.
    submitted = world.client.post(f"/api/tasks/{task['id']}/proof", json={"description": "Done"}, headers=world.wh)
    assert submitted.status_code == 200
    late = world.client.delete(f"/api/tasks/{task['id']}/proof/photos/{second['id']}", headers=world.wh)
    assert late.status_code == 409 and stored(app, second["storage_key"])


def test_a_refused_submission_does_not_trap_the_worker(world: Any, conn: Any, app: Any) -> None:
    task = world.accepted()
    photos = [data(upload(world, task["id"], JPEG)) for _ in range(5)]
    assert upload(world, task["id"], JPEG).status_code == 400  # a sixth
    proof = f"/api/tasks/{task['id']}/proof"
    # Refused submissions change nothing.
    for body in ({"description": ""}, {"description": "x" * 2001},
                 {"description": "Done", "photo_keys": [photos[0]["storage_key"], "proofs/elsewhere/1.jpg"]}):
        assert world.client.post(proof, json=body, headers=world.wh).status_code == 400, body
        assert len(rows(conn)) == 5 and all(stored(app, p["storage_key"]) for p in photos)
    assert conn.execute("SELECT state FROM tasks WHERE id = %s", (task["id"],)).fetchone()["state"] == "ACCEPTED"
    # photo_keys chooses the photos the proof keeps; the rest go, files included.
    keep = [photos[1]["storage_key"], photos[3]["storage_key"]]
    out = data(world.client.post(proof, json={"description": "Done", "photo_keys": keep}, headers=world.wh))
    assert out["proof"]["state"] == "SUBMITTED"
    assert sorted(p["storage_key"] for p in out["proof"]["photos"]) == sorted(keep)
    assert [stored(app, p["storage_key"]) for p in photos] == [False, True, False, True, False]
