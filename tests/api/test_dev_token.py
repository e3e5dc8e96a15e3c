"""Local work without a cloud: in Firebase-emulator mode the API accepts the unsigned tokens
`hustlexp dev-token` prints; without the emulator switch those same tokens are refused."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from hustlexp.devtools import emulator_token
from tests.api.conftest import PROJECT_ID, data, error

HUSTLEXP = str(Path(sys.executable).parent / "hustlexp")


def test_emulator_tokens_work_only_in_emulator_mode(client, monkeypatch):
    token = emulator_token("dev-user-1", "dev@example.test", PROJECT_ID)
    headers = {"Authorization": f"Bearer {token}"}
    assert error(client.post("/api/users", json={"full_name": "Dev"}, headers=headers))["code"] == "AUTH_INVALID"
    monkeypatch.setenv("FIREBASE_AUTH_EMULATOR_HOST", "127.0.0.1:9099")
    created = client.post("/api/users", json={"full_name": "Dev"}, headers=headers)
    assert created.status_code == 201 and data(created)["email"] == "dev@example.test"
    assert data(client.get("/api/users/me", headers=headers))["full_name"] == "Dev"


def test_dev_token_command_refuses_without_the_emulator():
    env = {"PATH": "/usr/bin:/bin", "HUSTLEXP_ENV": "development"}
    refused = subprocess.run([HUSTLEXP, "dev-token", "u1"], env=env,
                             capture_output=True, text=True, check=False)
    assert refused.returncode == 2 and "FIREBASE_AUTH_EMULATOR_HOST" in refused.stderr
    made = subprocess.run([HUSTLEXP, "dev-token", "u1"], capture_output=True, text=True,
                          env=env | {"FIREBASE_AUTH_EMULATOR_HOST": "127.0.0.1:9099"}, check=False)
    assert made.returncode == 0 and made.stdout.count(".") == 2
