"""How our Stripe calls travel: a stripe.HTTPClient of our own on urllib3, and the per-request
Stripe budget it enforces.

stripe's RequestsClient sent each call through the whole `requests` stack (session merge,
hooks, cookies, a read of the proxy environment variables and URL parsing on every call):
about 1 ms of CPU per call on an idle core, more under load, and a fifth of the app's Python
CPU in a task lifecycle (py-spy, issue 11); this client costs about half as much. It keeps
only what a Stripe call needs: one kept-alive connection pool per Stripe
host, TLS verified against the CA bundle stripe ships (as stripe's own clients do), the
connect/read timeouts cut to what is left of the current budget, and errors raised as
stripe.APIConnectionError with `should_retry` set the way stripe's RequestsClient sets it, so
the library's retries (max_network_retries) and our retryable/permanent split see what they
saw before.

A proxy is honoured when HTTPS_PROXY / HTTP_PROXY (and NO_PROXY) are set when the client is
built; they are read once, not per call.
"""

from __future__ import annotations

import contextvars
import ssl
import threading
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, NoReturn
from urllib.request import proxy_bypass_environment  # type: ignore[attr-defined]  # not in typeshed

import stripe
import urllib3
from urllib3 import exceptions as errors

CONNECT_TIMEOUT_SECONDS = 5.0
READ_TIMEOUT_SECONDS = 20.0
# Kept-alive connections to Stripe per process: one per thread (`hustlexp serve --threads` <= 64).
KEPT_CONNECTIONS = 64
# A call with less than this left of its budget is not sent: it could not get an answer in time.
MIN_CALL_SECONDS = 0.05
SPENT = "the time this request may wait on Stripe is spent"

# When the current request's time for Stripe runs out (time.monotonic()), None outside requests.
_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("hustlexp_stripe_deadline",
                                                                          default=None)


@contextmanager
def stripe_budget(seconds: float) -> Iterator[None]:
    """Every Stripe call made inside gets, all together, at most `seconds` (or less, inside a
    budget that ends sooner)."""
    deadline = time.monotonic() + seconds
    outer = _deadline.get()
    token = _deadline.set(deadline if outer is None else min(outer, deadline))
    try:
        yield
    finally:
        _deadline.reset(token)


def tls_context() -> ssl.SSLContext:
    """Certificates checked against stripe's own CA bundle, host names checked, nothing else trusted."""
    return ssl.create_default_context(cafile=stripe.ca_bundle_path)  # CERT_REQUIRED, host names checked


class StripeHTTPClient(stripe.HTTPClient):
    """Thread-safe: every thread of a worker shares it, and each pool keeps up to
    KEPT_CONNECTIONS connections alive (a busier moment opens more, then drops the extra)."""

    name = "hustlexp-urllib3"

    def __init__(self, *, connect_timeout: float = CONNECT_TIMEOUT_SECONDS,
                 read_timeout: float = READ_TIMEOUT_SECONDS) -> None:
        super().__init__(verify_ssl_certs=True)
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.tls = tls_context()
        self._proxies = urllib.request.getproxies_environment()
        self._managers: dict[str | None, urllib3.PoolManager] = {}
        # "scheme://host:port" -> its pool: a call finds its pool without parsing its URL.
        self._pools: dict[str, urllib3.HTTPConnectionPool] = {}
        self._lock = threading.Lock()

    def request(self, method: str, url: str, headers: Mapping[str, str] | None, post_data: Any = None,
                *, _usage: list[str] | None = None) -> tuple[str, int, Mapping[str, str]]:
        response = self._send(method, url, headers, post_data)
        # A body that is not UTF-8 reaches stripe as one that is not JSON: its APIError, as before.
        return response.data.decode("utf-8", "replace"), response.status, response.headers

    def close(self) -> None:
        with self._lock:
            managers = list(self._managers.values())
            self._managers.clear()
            self._pools.clear()
        for manager in managers:
            manager.clear()

    def _send(self, method: str, url: str, headers: Mapping[str, str] | None,
              post_data: Any) -> urllib3.BaseHTTPResponse:
        connect, read = self.connect_timeout, self.read_timeout
        deadline = _deadline.get()
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= MIN_CALL_SECONDS:
                # Not worth a retry by the library (the budget is gone); still retryable for us.
                raise stripe.APIConnectionError(_message(SPENT), should_retry=False)
            connect, read = min(connect, left), min(read, left)
        # The path starts at the first "/" after "scheme://".
        cut = url.find("/", url.find("//") + 2)
        origin, path = (url, "/") if cut < 0 else (url[:cut], url[cut:])
        body = post_data.encode() if isinstance(post_data, str) else post_data
        try:
            pool = self._pools.get(origin) or self._pool(origin)
            return pool.urlopen(method.upper(), path, body=body, headers=dict(headers or {}),
                                timeout=urllib3.Timeout(connect=connect, read=read),
                                retries=False, redirect=False, assert_same_host=False,
                                preload_content=True, decode_content=True)
        except Exception as exc:  # everything becomes an APIConnectionError, as in stripe's clients
            _raise_connection_error(exc)

    def _pool(self, origin: str) -> urllib3.HTTPConnectionPool:
        scheme, _, host = origin.partition("://")
        hostname = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
        proxy = self._proxies.get(scheme)
        if proxy and proxy_bypass_environment(hostname, self._proxies):
            proxy = None
        with self._lock:
            pool = self._pools.get(origin)
            if pool is None:
                manager = self._managers.get(proxy)
                if manager is None:
                    options: dict[str, Any] = {"maxsize": KEPT_CONNECTIONS, "ssl_context": self.tls,
                                               "retries": False}
                    manager = urllib3.ProxyManager(proxy, **options) if proxy else urllib3.PoolManager(**options)
                    self._managers[proxy] = manager
                pool = manager.connection_from_url(origin)
                self._pools[origin] = pool
        return pool


def _message(detail: str) -> str:
    return f"Stripe could not be reached or did not answer in time ({detail})."


def _raise_connection_error(exc: Exception) -> NoReturn:
    """The APIConnectionError stripe's RequestsClient would raise: a failed certificate check is
    not retried, a connection that failed, dropped or timed out is, anything else is not."""
    detail = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, errors.SSLError):
        message = f"Stripe's TLS certificate did not verify; is something on the network intercepting it? ({detail})"
        should_retry = False
    elif isinstance(exc, errors.TimeoutError | errors.NewConnectionError | errors.ProtocolError | errors.ProxyError):
        message, should_retry = _message(detail), True
    elif isinstance(exc, errors.HTTPError):
        message, should_retry = _message(detail), False
    else:
        message, should_retry = f"A Stripe call failed on our side before it was sent ({detail}).", False
    raise stripe.APIConnectionError(message, should_retry=should_retry) from exc
