"""Our Stripe HTTP client (services.stripe_http) over real HTTP: to the served fake Stripe, to a
port nobody listens on, to a TLS server whose certificate Stripe's CA bundle does not vouch for,
and through a proxy named in the environment when the client is built."""

from __future__ import annotations

import ipaddress
import socket
import ssl
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
import stripe
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from hustlexp.config import ConfigError
from hustlexp.services.payments import PaymentError, PaymentsGateway
from hustlexp.services.stripe_http import StripeHTTPClient, stripe_budget, tls_context
from tests.fakes.stripe_fake import FakeStripe

HEADERS = {"Authorization": "Bearer sk_test_http"}


@pytest.fixture
def fake() -> Iterator[FakeStripe]:
    with FakeStripe() as stripe_fake:
        yield stripe_fake


def create_intent(gateway: PaymentsGateway, escrow_id: str) -> str:
    return gateway.create_payment_intent(amount=5000, escrow_id=escrow_id, task_id="task_1",
                                         poster_id="user_poster", idempotency_key=f"pi-{escrow_id}").id


def test_one_thread_keeps_one_connection_for_all_its_calls(fake: FakeStripe) -> None:
    gateway = PaymentsGateway("sk_test_http", api_base=fake.serve())

    ids = [create_intent(gateway, f"esc_{n}") for n in range(5)]
    gateway.retrieve_payment_intent(ids[0])

    assert sorted(ids) == sorted(fake.payment_intents)
    assert fake.connections == 1


def test_answers_come_back_as_stripe_reads_them(fake: FakeStripe) -> None:
    client = StripeHTTPClient()

    body, status, headers = client.request("get", f"{fake.serve()}/v1/payment_intents/pi_missing", HEADERS)

    assert status == 404 and "resource_missing" in body
    assert headers["content-type"] == headers["Content-Type"]  # looked up in any case, as stripe does


def test_library_retries_go_through_it(fake: FakeStripe) -> None:
    """A 5xx, then a dropped connection, then success: stripe's retry loop (the same idempotency
    key) sees through our client what it saw through its own."""
    gateway = PaymentsGateway("sk_test_http", api_base=fake.serve(), max_network_retries=2)
    fake.fail_next("/v1/payment_intents", kind="api_error")
    fake.fail_next("/v1/payment_intents", kind="network")

    intent_id = create_intent(gateway, "esc_retry")

    attempts = [call for call in fake.calls if call[:2] == ("POST", "/v1/payment_intents")]
    assert [call[3] for call in attempts] == ["pi-esc_retry"] * 3
    assert list(fake.payment_intents) == [intent_id]


def test_a_hanging_stripe_ends_in_a_read_timeout(fake: FakeStripe) -> None:
    client = StripeHTTPClient(read_timeout=0.2)
    fake.fail_next("/v1/transfers", kind="hang")
    try:
        with pytest.raises(stripe.APIConnectionError) as caught:
            client.request("post", f"{fake.serve()}/v1/transfers", HEADERS, "amount=100")
    finally:
        fake.unhang()

    assert caught.value.should_retry is True
    assert isinstance(caught.value.__cause__, TimeoutError)


def test_the_budget_cuts_the_read_timeout(fake: FakeStripe) -> None:
    client = StripeHTTPClient()  # 20 s to read: the budget is what ends the wait
    fake.fail_next("/v1/transfers", kind="hang")
    try:
        with stripe_budget(0.3), pytest.raises(stripe.APIConnectionError) as caught:
            client.request("post", f"{fake.serve()}/v1/transfers", HEADERS, "amount=100")
    finally:
        fake.unhang()

    assert isinstance(caught.value.__cause__, TimeoutError)


def test_a_spent_budget_sends_nothing(fake: FakeStripe) -> None:
    gateway = PaymentsGateway("sk_test_http", api_base=fake.serve(), max_network_retries=3)

    with stripe_budget(0.01), pytest.raises(PaymentError) as caught:
        create_intent(gateway, "esc_late")

    assert caught.value.retryable is True
    assert isinstance(caught.value.__cause__, stripe.APIConnectionError)
    assert caught.value.__cause__.should_retry is False and "spent" in str(caught.value.__cause__)
    assert fake.calls == []


def test_connection_refused_is_a_retryable_connection_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # closed again below: nobody listens there
    client = StripeHTTPClient()

    with pytest.raises(stripe.APIConnectionError) as caught:
        client.request("get", f"http://127.0.0.1:{port}/v1/balance", HEADERS)

    assert caught.value.should_retry is True
    assert isinstance(caught.value.__cause__, ConnectionRefusedError)
    gateway = PaymentsGateway("sk_test_http", api_base=f"http://127.0.0.1:{port}")
    with pytest.raises(PaymentError) as failed:
        gateway.retrieve_payment_intent("pi_1")
    assert failed.value.retryable is True


def test_tls_trusts_stripes_ca_bundle_and_checks_host_names() -> None:
    context = StripeHTTPClient().tls
    bundle = Path(stripe.ca_bundle_path).read_text()

    assert context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname is True
    assert len(context.get_ca_certs()) == bundle.count("BEGIN CERTIFICATE") > 0
    assert context.get_ca_certs() == tls_context().get_ca_certs()


def test_a_certificate_outside_the_bundle_is_refused_and_not_retried() -> None:
    with _tls_server() as port, pytest.raises(stripe.APIConnectionError) as caught:
        StripeHTTPClient().request("get", f"https://127.0.0.1:{port}/v1/balance", HEADERS)

    assert caught.value.should_retry is False
    assert isinstance(caught.value.__cause__, ssl.SSLCertVerificationError)


def test_a_proxy_set_when_built_carries_the_calls(fake: FakeStripe, monkeypatch: pytest.MonkeyPatch) -> None:
    """The served fake stands in as the proxy: it is asked for the absolute URL and answers it."""
    for name in ("no_proxy", "NO_PROXY", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", fake.serve())
    client = StripeHTTPClient()
    monkeypatch.delenv("HTTP_PROXY")  # read once, when built

    body, status, _ = client.request("get", "http://api.stripe.invalid/v1/payment_intents/pi_missing", HEADERS)

    assert status == 404 and "resource_missing" in body
    assert fake.calls[-1][:2] == ("GET", "/v1/payment_intents/pi_missing")


class _Silent(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, format: str, *args: object) -> None:
        return None


class _TLSServer(HTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        return None  # the refused handshake is the point


@contextmanager
def _tls_server() -> Iterator[int]:
    """An HTTPS server on loopback whose self-signed certificate is valid for 127.0.0.1."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1)).not_valid_after(now + timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    with tempfile.TemporaryDirectory() as folder:
        pem = Path(folder) / "server.pem"
        pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(pem)
    server = _TLSServer(("127.0.0.1", 0), _Silent)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()


def test_a_kept_connection_the_other_end_closed_is_not_reused() -> None:
    """A server that closes each connection after answering, without saying so: the next call
    sees the idle connection dropped and opens another instead of failing on it."""
    with _closing_server() as (port, connections, hung_up):
        client = StripeHTTPClient()
        for _ in range(3):
            body, status, _ = client.request("get", f"http://127.0.0.1:{port}/v1/balance", HEADERS)
            assert (status, body) == (200, "{}")
            assert hung_up.acquire(timeout=10)  # its end is closed before the next call

    assert connections == [1, 2, 3]


class _Closing(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    opened: list[int]
    hung_up: threading.Semaphore

    def setup(self) -> None:
        super().setup()
        self.opened.append(len(self.opened) + 1)

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "2")
        self.end_headers()
        self.wfile.write(b"{}")
        # No "Connection: close" header: the client cannot know.
        self.close_connection = True
        self.connection.shutdown(socket.SHUT_RDWR)
        self.hung_up.release()

    def log_message(self, format: str, *args: object) -> None:
        return None


@contextmanager
def _closing_server() -> Iterator[tuple[int, list[int], threading.Semaphore]]:
    opened: list[int] = []
    hung_up = threading.Semaphore(0)
    handler = type("Handler", (_Closing,), {"opened": opened, "hung_up": hung_up})
    server = HTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield int(server.server_address[1]), opened, hung_up
    finally:
        server.shutdown()
        server.server_close()


def test_an_https_proxy_is_refused_when_the_client_is_built(monkeypatch: pytest.MonkeyPatch) -> None:
    """Spoken to in plain HTTP, an https:// proxy would see its CONNECT and credentials unencrypted."""
    monkeypatch.setenv("HTTPS_PROXY", "https://user:secret@proxy.invalid:8443")
    with pytest.raises(ConfigError, match="https:// proxy"):
        StripeHTTPClient()
