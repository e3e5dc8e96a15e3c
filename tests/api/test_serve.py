"""`hustlexp serve`: the real command in a subprocess, on its own embedded PostgreSQL."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
import requests

from hustlexp.db import migrations

START_TIMEOUT = 120.0
# The installed console script, as users run it.
HUSTLEXP = [str(Path(sys.executable).parent / "hustlexp")]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def wait_for_health(base: str, proc: subprocess.Popen[bytes]) -> requests.Response:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            output = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
            raise AssertionError(f"hustlexp serve exited ({proc.returncode}) before answering:\n{output[-3000:]}")
        try:
            response = requests.get(f"{base}/health", timeout=5)
            if response.status_code == 200:
                return response
        except (requests.ConnectionError, requests.Timeout):
            pass  # still starting (workers boot after the embedded server is up)
        time.sleep(0.5)
    raise AssertionError("GET /health never answered 200")


def test_serve_starts_embedded_database_and_stops_cleanly_on_sigint(tmp_path: Path) -> None:
    port = free_port()
    # Not under pytest's tmp_path: as root the server runs as its own user, which must reach the folder,
    # and another pytest on the machine may tighten /tmp/pytest-of-root meanwhile.
    folder = tempfile.TemporaryDirectory(prefix="hustlexp-serve-")
    pgdata = Path(folder.name) / "pgdata"
    env = {k: v for k, v in os.environ.items()
           if k not in ("DATABASE_URL", "FIREBASE_AUTH_EMULATOR_HOST", "STRIPE_API_BASE")}
    env |= {"HUSTLEXP_ENV": "development", "HUSTLEXP_PGDATA": str(pgdata),
            "HUSTLEXP_STORAGE_DIR": str(tmp_path / "uploads")}
    proc = subprocess.Popen([*HUSTLEXP, "serve", "--port", str(port), "--workers", "2"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        health = wait_for_health(base, proc)
        assert health.json()["schema_version"] == migrations.head()  # installed on the empty database
        assert health.json()["checks"] == {"database": "ok"}
        spec = requests.get(f"{base}/openapi.json", timeout=5)
        assert spec.status_code == 200
        assert "/api/users/me" in spec.json()["paths"]
        unauthenticated = requests.get(f"{base}/api/users/me", timeout=5)
        assert unauthenticated.status_code == 401
        assert unauthenticated.json()["error"]["code"] == "AUTH_REQUIRED"

        postmaster = int((pgdata / "postmaster.pid").read_text().split()[0])
        assert alive(postmaster)
        proc.send_signal(signal.SIGINT)
        output, _ = proc.communicate(timeout=60)
        assert proc.returncode == 0, output.decode(errors="replace")[-2000:]
        deadline = time.monotonic() + 10
        while alive(postmaster) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not alive(postmaster), "the embedded PostgreSQL outlived hustlexp serve"
        assert not (pgdata / "postmaster.pid").exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        folder.cleanup()


@pytest.mark.parametrize("argv", [["--port", "0"], ["--port", "70000"], ["--port", "http"],
                                  ["--workers", "0"]])
def test_serve_rejects_bad_flags_before_starting_anything(tmp_path: Path, argv: list[str]) -> None:
    result = subprocess.run([*HUSTLEXP, "serve", *argv], cwd=tmp_path, capture_output=True, timeout=60,
                            env=os.environ | {"HUSTLEXP_PGDATA": str(tmp_path / "pgdata")})
    assert result.returncode == 2
    assert argv[0].encode() in result.stderr
    assert not (tmp_path / "pgdata").exists()


def test_serve_applies_the_schema_to_an_empty_database_url_and_refuses_a_foreign_one(tmp_path: Path, pg) -> None:
    import psycopg
    from psycopg import sql

    name = f"hx_empty_{os.getpid()}"
    with psycopg.connect(pg.admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    url = pg.url_for(name)
    env = {k: v for k, v in os.environ.items() if k not in ("FIREBASE_AUTH_EMULATOR_HOST", "STRIPE_API_BASE")}
    env |= {"HUSTLEXP_ENV": "development", "DATABASE_URL": url, "HUSTLEXP_STORAGE_DIR": str(tmp_path / "up")}
    port = free_port()
    proc = subprocess.Popen([*HUSTLEXP, "serve", "--port", str(port), "--workers", "1"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        assert wait_for_health(f"http://127.0.0.1:{port}", proc).json()["schema_version"] == migrations.head()
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=60)
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("UPDATE schema_versions SET version = '0.9.0' WHERE version = '1.0.0'")
        refused = subprocess.run([*HUSTLEXP, "serve", "--port", str(free_port())], cwd=tmp_path, env=env,
                                 capture_output=True, timeout=60)
        assert refused.returncode == 2 and b"0.9.0" in refused.stderr
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        pg.drop_database(name)


def raw_exchange(port: int, request: bytes) -> tuple[str, dict[str, str], bytes]:
    """Send bytes as they are (requests would refuse to build these) and read the whole answer."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    status, *lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines)}
    return status, headers, body


def test_gunicorn_refusals_are_json_envelopes(tmp_path: Path, pg) -> None:
    import json

    import psycopg
    from psycopg import sql

    name = f"hx_gunicorn_{os.getpid()}"
    with psycopg.connect(pg.admin_url, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    env = {k: v for k, v in os.environ.items() if k not in ("FIREBASE_AUTH_EMULATOR_HOST", "STRIPE_API_BASE")}
    env |= {"HUSTLEXP_ENV": "development", "DATABASE_URL": pg.url_for(name),
            "HUSTLEXP_STORAGE_DIR": str(tmp_path / "up")}
    port = free_port()
    proc = subprocess.Popen([*HUSTLEXP, "serve", "--port", str(port), "--workers", "1"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wait_for_health(f"http://127.0.0.1:{port}", proc)
        host = b"Host: 127.0.0.1\r\n"
        cases = {
            "400": b"NOT A REQUEST\r\n\r\n",
            "414": b"GET /" + b"a" * 8000 + b" HTTP/1.1\r\n" + host + b"\r\n",
            "431": b"GET /health HTTP/1.1\r\n" + host + b"X-Big: " + b"b" * 9000 + b"\r\n\r\n",
        }
        for expected, request in cases.items():
            status, headers, body = raw_exchange(port, request)
            assert status.split()[1] == expected, status
            assert headers["content-type"] == "application/json", (expected, headers)
            envelope = json.loads(body)
            assert envelope["success"] is False and envelope["error"]["code"], envelope
        many = b"GET /health HTTP/1.1\r\n" + host + b"".join(b"X-%d: 1\r\n" % i for i in range(150)) + b"\r\n"
        status, headers, body = raw_exchange(port, many)
        assert status.split()[1] == "431" and json.loads(body)["error"]["code"] == "REQUEST_HEADER_FIELDS_TOO_LARGE"
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            try:
                proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        pg.drop_database(name)
