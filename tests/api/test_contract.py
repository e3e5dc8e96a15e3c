"""Contract test: schemathesis generates requests for every operation of our OpenAPI document,
valid ones and invalid ones, and sends them in process to the real app (real database, real
token verification) as a registered user, with every check schemathesis has. So: no answer is
a 5xx, every answer matches its documented status, schema and content type, every request the
document calls valid is accepted (never a 400 from a rule the document does not state), and
every request it calls invalid is refused.

Some rules cannot be written as JSON Schema and are stated in words instead: a task's deadline
lies in the future, an uploaded photo is an image that decodes, a page `cursor` is one the
server handed out (as `next_cursor`), never sent with `offset`, and the feed's position comes as
lat with lng (radius_km and sort=distance need it; max_price is at least min_price), and an
upload's bucket decides its task_id, content types and size (POST /api/uploads).
keep_rules_stated_in_words makes the generated requests keep those (and only those), and the
webhook route gets its body signed, as Stripe would sign it."""

from __future__ import annotations

import contextlib
import io
from datetime import UTC, datetime
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings

from hustlexp.app import close_app, create_app
from tests.api.conftest import PROJECT_ID, WEBHOOK_SECRET
from tests.fakes.stripe_fake import FakeStripe
from tests.images import JPEG


def _openapi_document() -> dict[str, Any]:
    """The document as the app serves it. Building the app connects to nothing (the pool
    opens lazily), so an unreachable database address is fine here."""
    app = create_app({"HUSTLEXP_ENV": "test", "DATABASE_URL": "postgresql://contract@127.0.0.1:1/none",
                      "FIREBASE_PROJECT_ID": PROJECT_ID})
    try:
        document: dict[str, Any] = app.test_client().get("/openapi.json").get_json()
        return document
    finally:
        close_app(app)


class _CurrentApp:
    """The WSGI app every request goes to: the running test's own app (its fresh database).
    It is the schema's app, so the requests checks send on their own (ignored_auth replays
    without credentials, use_after_free...) reach it too. It signs webhook deliveries with the
    test secret: here the generator plays Stripe."""

    app: Any = None

    def __call__(self, environ: dict[str, Any], start_response: Any) -> Any:
        if environ.get("PATH_INFO") == "/webhooks/stripe":
            body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
            environ["wsgi.input"] = io.BytesIO(body)
            # Not text: left unsigned, refused like any unsigned delivery.
            with contextlib.suppress(UnicodeDecodeError):
                environ["HTTP_STRIPE_SIGNATURE"] = FakeStripe.sign(body.decode("utf-8"), WEBHOOK_SECRET)[1]
        return self.app(environ, start_response)


CURRENT = _CurrentApp()
schema = schemathesis.openapi.from_dict(_openapi_document())
schema.app = CURRENT


def keep_rules_stated_in_words(case: Any) -> None:
    """Make the case keep the rules stated in words. Only values that are otherwise valid
    change, so a request generated to break a documented rule still breaks it."""
    body, path = case.body, case.operation.path
    cursor = (case.query or {}).get("cursor")
    if isinstance(cursor, str) and 1 <= len(cursor) <= 500:
        del case.query["cursor"]  # an otherwise valid cursor the server never made
    if path == "/api/tasks/feed" and isinstance(case.query, dict):
        _keep_feed_rules(case.query)
    if not isinstance(body, dict):
        return
    if path == "/api/tasks" and isinstance(body.get("deadline"), str):
        try:
            deadline = datetime.fromisoformat(body["deadline"])
        except ValueError:
            return
        if deadline.tzinfo is not None and deadline <= datetime.now(UTC):
            body["deadline"] = deadline.replace(year=datetime.now(UTC).year + 1).isoformat()
    if path.endswith("/proof/photos") and isinstance(body.get("file"), bytes | str):
        body["file"] = JPEG
    if path == "/api/uploads":
        _keep_upload_rules(body)


def _keep_upload_rules(body: dict[str, Any]) -> None:
    """What a bucket takes: avatars no task, every other bucket a task; avatars and messages
    JPEG or PNG of at most 5 MB (proofs and evidence: also HEIC, 10 MB)."""
    from hustlexp.services.uploads import BUCKETS

    bucket = body.get("bucket")
    rules = BUCKETS.get(bucket) if isinstance(bucket, str) else None
    if rules is None:
        return
    if body.get("bucket") == "avatars":
        body.pop("task_id", None)
    elif "task_id" not in body:
        body["task_id"] = "00000000-0000-4000-8000-000000000000"
    if body.get("content_type") in ("image/jpeg", "image/png", "image/heic") \
            and body["content_type"] not in rules.content_types:
        body["content_type"] = "image/jpeg"
    size = body.get("size")
    if isinstance(size, int) and not isinstance(size, bool) and rules.max_bytes < size <= 10 * 1024 * 1024:
        body["size"] = rules.max_bytes


def _keep_feed_rules(query: dict[str, Any]) -> None:
    def number(name: str) -> bool:  # query values may arrive as numbers or as their text
        value = query.get(name)
        try:
            return value is not None and not isinstance(value, bool) and float(value) == float(value)
        except (TypeError, ValueError):
            return False

    if number("lat") != number("lng"):  # one half of a position
        query.pop("lat" if number("lat") else "lng", None)
    if not (number("lat") and number("lng")):
        if number("radius_km"):
            del query["radius_km"]
        if query.get("sort") == "distance":
            del query["sort"]
    if number("min_price") and number("max_price") and float(query["min_price"]) > float(query["max_price"]):
        query["min_price"], query["max_price"] = query["max_price"], query["min_price"]


@pytest.fixture
def caller(client: Any, register: Any) -> dict[str, str]:
    _, headers = register(client)
    return headers


@schema.parametrize()
@settings(max_examples=12, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much,
                                 HealthCheck.function_scoped_fixture, HealthCheck.data_too_large])
def test_every_operation_honours_its_contract(case: Any, app: Any, caller: dict[str, str]) -> None:
    CURRENT.app = app
    keep_rules_stated_in_words(case)
    case.call_and_validate(headers=caller)
