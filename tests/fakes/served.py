"""The HTTP server every local stand-in runs on (fake Stripe, fake FCM)."""

from __future__ import annotations

from http.server import ThreadingHTTPServer


class LocalServer(ThreadingHTTPServer):
    """A thread per connection, on loopback. The listen backlog is socketserver's 5 by default:
    a burst of clients connecting at once (16 threads of one gunicorn worker) would overflow it
    and see resets on a busy machine, which no real service does."""

    daemon_threads = True
    request_queue_size = 128
