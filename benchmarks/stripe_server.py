"""The fake Stripe of tests/fakes in a process of its own, for bench_throughput: its CPU is then
neither the API's nor the load generator's, and the bench can meter it apart.

    python benchmarks/stripe_server.py      # prints "<stripe base url> <control url>", serves until killed

PUT <control url>/latency with a body of seconds (e.g. b"0.2") sets how long every Stripe answer
waits; nothing else is controlled from outside."""

from __future__ import annotations

import signal
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.fakes.stripe_fake import FakeStripe


def main() -> int:
    fake = FakeStripe()
    base = fake.serve()

    class Control(BaseHTTPRequestHandler):
        def do_PUT(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            try:
                fake.latency = max(0.0, float(self.rfile.read(length)))
            except ValueError:
                self.send_response(400)
            else:
                self.send_response(204)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    control = ThreadingHTTPServer(("127.0.0.1", 0), Control)
    threading.Thread(target=control.serve_forever, daemon=True).start()
    print(base, f"http://127.0.0.1:{control.server_address[1]}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    control.shutdown()
    fake.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
