"""The request hook: take or make the request id (X-Request-ID, returned on every answer),
then one access-log line and one latency sample per request. Kept to a few microseconds:
no I/O besides the log line, nothing read from the database."""

from __future__ import annotations

import logging
import time
from typing import Any

from flask import Flask, Response, g, request

from hustlexp.obs import context, metrics
from hustlexp.obs.logs import ACCESS_LOGGER

log = logging.getLogger(ACCESS_LOGGER)


def init_request_log(app: Flask, pool: Any) -> None:
    @app.before_request
    def _start() -> None:
        rid = context.accept(request.headers.get(context.HEADER))
        g.hx_request = (rid, context.set_for_request(rid), time.perf_counter())

    @app.after_request
    def _finish(response: Response) -> Response:
        started = g.get("hx_request")
        if started is None:  # a request that failed before our first hook ran
            return response
        rid, _, t0 = started
        seconds = time.perf_counter() - t0
        route = request.url_rule.rule if request.url_rule is not None else "(unmatched)"
        response.headers[context.HEADER] = rid
        user = g.get("hx_user")
        if log.isEnabledFor(logging.INFO):
            fields = {"event": "request", "method": request.method, "route": route, "path": request.path,
                      "status": response.status_code, "duration_ms": round(seconds * 1000, 2),
                      "user_id": str(user.id) if user is not None else None}
            # The record is built here rather than by log.info, which first walks the stack to
            # find its caller (file, line, function: no formatter of ours prints them).
            log.handle(log.makeRecord(log.name, logging.INFO, __file__, 0, "%s %s %s %.1fms",
                                      (request.method, route, response.status_code, seconds * 1000), None,
                                      "_finish", {"request_id": rid, "fields": fields}))
        metrics.observe_request(route, request.method, response.status_code, seconds)
        metrics.sample_pool(pool)
        return response

    @app.teardown_request
    def _unbind(_exc: BaseException | None) -> None:
        # Popped: a streamed answer tears its request down again when the stream ends.
        started = g.pop("hx_request", None)
        if started is not None:
            context.reset(started[1])
