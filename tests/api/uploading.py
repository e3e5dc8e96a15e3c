"""The direct-upload flow as a client runs it: announce (POST /api/uploads), PUT the bytes to
the presigned URL (the object store itself, or the API with local storage), confirm."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import requests

from tests.api.conftest import data
from tests.images import JPEG


def announce(client: Any, headers: dict[str, str], bucket: str, task_id: Any = None, *,
             content_type: str = "image/jpeg", size: int = len(JPEG)) -> Any:
    body: dict[str, Any] = {"bucket": bucket, "content_type": content_type, "size": size}
    if task_id is not None:
        body["task_id"] = str(task_id)
    return client.post("/api/uploads", json=body, headers=headers)


def put(client: Any, target: dict[str, Any], body: bytes, headers: dict[str, str] | None = None) -> int:
    """PUT to the presigned URL with the headers it was signed for (or `headers`); the status."""
    sent = headers if headers is not None else target["headers"]
    url = urlsplit(target["upload_url"])
    if url.path.startswith("/storage/objects/"):  # local storage: the API plays the store
        response = client.put(f"{url.path}?{url.query}", data=body,
                              headers={k: v for k, v in sent.items() if k != "Content-Length"},
                              content_type=sent.get("Content-Type"))
        return int(response.status_code)
    return requests.put(target["upload_url"], data=body, headers=sent, timeout=10).status_code


def confirm(client: Any, headers: dict[str, str], upload_id: Any, **body: Any) -> Any:
    return client.post(f"/api/uploads/{upload_id}/confirm", json=body, headers=headers)


def upload(client: Any, headers: dict[str, str], bucket: str, task_id: Any = None,
           image: bytes = JPEG, content_type: str = "image/jpeg") -> dict[str, Any]:
    """The whole flow, asserting each step succeeds; the confirm answer."""
    target = data(announce(client, headers, bucket, task_id, content_type=content_type, size=len(image)))
    assert put(client, target, image) == 200
    confirmed: dict[str, Any] = data(confirm(client, headers, target["upload"]["id"]))
    return confirmed
