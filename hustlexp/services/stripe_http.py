"""How our Stripe calls travel: a stripe.HTTPClient of our own on the standard library's
http.client, and the per-request Stripe budget it enforces.

stripe's RequestsClient sent each call through the whole `requests` stack (session merge,
hooks, cookies, a read of the proxy environment variables and URL parsing on every call):
about 1 ms of CPU per call on an idle core, more under load, and a fifth of the app's Python
CPU in a task lifecycle (py-spy, issue 11). urllib3 alone cost half as much; http.client with a
pool of our own costs half as much again (~0.1 ms a call against the local fake). It keeps only
what a Stripe call needs: kept-alive connections per Stripe host (one per thread at most: a
call takes one, or opens one, and gives it back), TLS verified against the CA bundle stripe
ships (as stripe's own clients do), the connect/read timeouts cut to what is left of the
current budget, and errors raised as stripe.APIConnectionError with `should_retry` set the way
stripe's RequestsClient sets it, so the library's retries (max_network_retries) and our
retryable/permanent split see what they saw before.

A proxy is honoured when HTTPS_PROXY / HTTP_PROXY (and NO_PROXY) are set when the client is
built; they are read once, not per call.
"""

from __future__ import annotations

import base64
import contextvars
import http.client
import select
import ssl
import threading
import time
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, NoReturn, cast
from urllib.parse import unquote, urlsplit
from urllib.request import proxy_bypass_environment  # type: ignore[attr-defined]  # not in typeshed

import stripe

from hustlexp.config import ConfigError

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
    """Thread-safe: every thread of a worker shares it. Each Stripe host keeps up to
    KEPT_CONNECTIONS idle connections alive (a busier moment opens more, then drops the extra)."""

    name = "hustlexp-httpclient"

    def __init__(self, *, connect_timeout: float = CONNECT_TIMEOUT_SECONDS,
                 read_timeout: float = READ_TIMEOUT_SECONDS) -> None:
        super().__init__(verify_ssl_certs=True)
        self.connect_timeout = connect_timeout
        self.read_timeout = read_timeout
        self.tls = tls_context()
        self._proxies = urllib.request.getproxies_environment()
        for scheme in ("https", "http"):
            if self._proxies.get(scheme, "").lower().startswith("https://"):
                # Spoken to in plain HTTP, its CONNECT (and any credentials) would travel unencrypted.
                raise ConfigError(f"{scheme.upper()}_PROXY names an https:// proxy; only http:// proxies are "
                                 "supported (Stripe's own TLS runs through the proxy's CONNECT tunnel)")
        # "scheme://host:port" -> its idle connections, the most recently used last.
        self._idle: dict[str, list[_Connection]] = {}
        self._lock = threading.Lock()

    def request(self, method: str, url: str, headers: Mapping[str, str] | None, post_data: Any = None,
                *, _usage: list[str] | None = None) -> tuple[str, int, Mapping[str, str]]:
        status, response_headers, data = self._send(method, url, headers, post_data)
        # A body that is not UTF-8 reaches stripe as one that is not JSON: its APIError, as before.
        # An HTTPMessage: looked up in any case, as stripe reads headers.
        return data.decode("utf-8", "replace"), status, cast(Mapping[str, str], response_headers)

    def close(self) -> None:
        with self._lock:
            idle = [conn for conns in self._idle.values() for conn in conns]
            self._idle.clear()
        for conn in idle:
            conn.close()

    def _send(self, method: str, url: str, headers: Mapping[str, str] | None,
              post_data: Any) -> tuple[int, http.client.HTTPMessage, bytes]:
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
        conn = self._take(origin)
        try:
            if conn is None:
                conn = self._open(origin, connect)
                if deadline is not None:  # connecting took some of what was left
                    read = min(read, max(deadline - time.monotonic(), MIN_CALL_SECONDS))
            assert conn.sock is not None
            conn.sock.settimeout(read)
            conn.request(method.upper(), url if conn.absolute_target else path, body=body, headers=dict(headers or {}))
            response = conn.getresponse()
            data = response.read()
        except Exception as exc:  # everything becomes an APIConnectionError, as in stripe's clients
            if conn is not None:
                conn.close()
            _raise_connection_error(exc)
        if response.will_close:
            conn.close()
        else:
            self._give(origin, conn)
        return response.status, response.headers, data

    def _take(self, origin: str) -> _Connection | None:
        """An idle connection to `origin` that the other end has not closed meanwhile."""
        while True:
            with self._lock:
                idle = self._idle.get(origin)
                conn = idle.pop() if idle else None
            if conn is None or not _dropped(conn):
                return conn
            conn.close()

    def _give(self, origin: str, conn: _Connection) -> None:
        with self._lock:
            idle = self._idle.setdefault(origin, [])
            if len(idle) < KEPT_CONNECTIONS:
                idle.append(conn)
                return
        conn.close()

    def _open(self, origin: str, timeout: float) -> _Connection:
        target = urlsplit(origin)
        host, port = target.hostname or "", target.port
        proxy = self._proxies.get(target.scheme)
        if proxy and proxy_bypass_environment(host, self._proxies):
            proxy = None
        if proxy is None:
            conn = _connection(target.scheme, host, port, timeout, self.tls)
        else:
            # The proxy is spoken to in plain HTTP: CONNECT for Stripe's HTTPS, the absolute URL otherwise.
            via = urlsplit(proxy if "//" in proxy else f"http://{proxy}")
            conn = _connection(target.scheme, via.hostname or "", via.port or 80, timeout, self.tls)
            auth = ({"Proxy-Authorization": "Basic " + base64.b64encode(
                f"{unquote(via.username)}:{unquote(via.password or '')}".encode()).decode()}
                if via.username else {})
            if target.scheme == "https":
                conn.set_tunnel(host, port, headers=auth)
            else:
                # A plain-HTTP proxy is asked for the absolute URL.
                conn.absolute_target = True
                conn.proxy_headers = auth
        conn.connect()
        return conn


class _Connection(http.client.HTTPConnection):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Through a plain-HTTP proxy: the request line names the whole URL, with the proxy's credentials.
        self.absolute_target = False
        self.proxy_headers: Mapping[str, str] = {}

    def putrequest(self, method: str, url: str, skip_host: bool = False, skip_accept_encoding: bool = False) -> None:
        super().putrequest(method, url, skip_host=skip_host, skip_accept_encoding=skip_accept_encoding)
        for name, value in self.proxy_headers.items():
            self.putheader(name, value)


class _TLSConnection(http.client.HTTPSConnection, _Connection):
    pass


def _connection(scheme: str, host: str, port: int | None, timeout: float, tls: ssl.SSLContext) -> _Connection:
    if scheme == "https":
        return _TLSConnection(host, port, timeout=timeout, context=tls)
    if scheme == "http":
        return _Connection(host, port, timeout=timeout)
    raise ValueError(f"unsupported scheme {scheme!r}")


def _dropped(conn: _Connection) -> bool:
    """True when a kept-alive connection can no longer carry a request: closed by us, or
    readable while idle (the other end closed it, or sent what nobody asked for)."""
    if conn.sock is None:
        return True
    # poll, not select: select refuses descriptors past 1024, and every call would then open anew.
    poller = select.poll()
    try:
        poller.register(conn.sock, select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError):
        return True


def _message(detail: str) -> str:
    return f"Stripe could not be reached or did not answer in time ({detail})."


def _raise_connection_error(exc: Exception) -> NoReturn:
    """The APIConnectionError stripe's RequestsClient would raise: a failed certificate check is
    not retried; a connection that failed, dropped or timed out (a TLS session cut short among
    them, as a reused connection may be), or an answer that broke off, is;
    anything else (a request we could not even write) is not."""
    detail = f"{type(exc).__name__}: {exc}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        message = f"Stripe's TLS certificate did not verify; is something on the network intercepting it? ({detail})"
        should_retry = False
    elif isinstance(exc, OSError | http.client.HTTPException) and not isinstance(exc, http.client.InvalidURL):
        message, should_retry = _message(detail), True
    else:
        message, should_retry = f"A Stripe call failed on our side before it was sent ({detail}).", False
    raise stripe.APIConnectionError(message, should_retry=should_retry) from exc
