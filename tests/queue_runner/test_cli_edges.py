"""The CLI where a new user meets it: read-only files and folders, a byte order mark, pipes that
close early, logs, narrow terminals, no noxfile at all, and the frontend queue's phase headings.
Every case runs queue-runner in a fresh process, as people and agents do."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import shutil
import stat
import struct
import subprocess
import sys
import termios

import pytest
from rich.cells import cell_len

from queue_runner import parse
from tests.queue_runner.conftest import (
    GOLDEN,
    ROOT,
    SCRATCH_STEPS,
    cli_env,
    run_cli,
    scratch_queue,
    without_override_rights,
)

BOM = b"\xef\xbb\xbf"
PROJECT_QUEUE = ROOT / "BACKEND_EXECUTION_QUEUE.md"
NOXFILE = ROOT / "noxfile.py"


def one_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


# --- 1. a queue file that may not or cannot be written ----------------------------------------

def test_a_read_only_queue_file_is_refused_before_any_gate_runs(scratch):
    scratch.queue.chmod(0o444)
    before = scratch.queue.read_bytes()
    result = scratch.cli("--json", "run", "S001")
    assert result.code == 2
    doc = result.json()
    assert (doc["exit_code"], doc["ticked"], doc["step"]["id"]) == (2, False, "S001")
    assert "read-only (mode 0444)" in doc["error"] and "chmod u+w" in doc["error"]
    assert scratch.ran() == []
    assert scratch.queue.read_bytes() == before
    assert stat.S_IMODE(scratch.queue.stat().st_mode) == 0o444
    human = scratch.cli("run", "S001")
    assert human.code == 2
    assert "read-only" in one_line(human.stderr)


@pytest.fixture
def locked(scratch):
    """The scratch folder, made read-only by the test; writable again afterwards."""
    yield scratch
    scratch.dir.chmod(0o755)


def test_a_folder_that_takes_no_new_file_is_refused_with_one_line(locked):
    locked.dir.chmod(0o555)
    before = locked.queue.read_bytes()
    result = locked.cli("--json", "run", "S001", preexec_fn=without_override_rights)
    assert result.code == 2, result.stderr
    assert "cannot write in" in result.json()["error"]
    assert result.stderr == ""
    human = locked.cli("run", "S001", preexec_fn=without_override_rights)
    assert human.code == 2
    assert "make the folder writable" in one_line(human.stderr)
    assert locked.queue.read_bytes() == before


LOCKING_SESSION = '''

@nox.session(name="locks-folder", tags=["S011"])
def locks_folder(session):
    HERE.chmod(0o555)  # the folder turns read-only while the gate runs
'''


def test_a_write_that_fails_after_the_gates_passed_is_not_a_gate_failure(locked):
    locked.noxfile.write_text(locked.noxfile.read_text() + LOCKING_SESSION)
    locked.queue.write_text(scratch_queue([*SCRATCH_STEPS, ("S011", "Gate that locks the folder", "none", False)]))
    before = locked.queue.read_bytes()
    result = locked.cli("--json", "run", "S011", preexec_fn=without_override_rights)
    assert result.code == 2, result.stderr
    doc = result.json()
    assert [(s["name"], s["result"]) for s in doc["sessions"]] == [("locks-folder", "success")]
    assert doc["ticked"] is False
    assert doc["error"] == f"cannot write {locked.queue}: Permission denied; STEP S011 was not ticked"
    assert "Traceback" not in result.stderr
    locked.dir.chmod(0o755)
    assert locked.queue.read_bytes() == before
    assert [p.name for p in locked.dir.iterdir() if p.name.endswith(".tmp")] == []


# --- 2. a byte order mark ---------------------------------------------------------------------

def test_a_byte_order_mark_before_the_first_step_hides_nothing_and_survives_ticking(scratch):
    text = scratch.queue.read_bytes()
    scratch.queue.write_bytes(BOM + text[text.index(b"### STEP S001"):])
    doc = scratch.cli("--json", "status").json()
    assert doc["exit_code"] == 0 and doc["error"] is None
    assert doc["summary"] == {"total": 10, "done": 2, "next": "S001", "state": "runnable"}
    before = scratch.queue.read_bytes()
    assert scratch.cli("--json", "run").code == 0
    after = scratch.queue.read_bytes()
    assert after.startswith(BOM)
    assert [i for i, (a, b) in enumerate(zip(before, after, strict=True)) if a != b] == [
        parse.read(scratch.queue).get("S001").box_offset]


# --- 4 and 5. pipes and logs ----------------------------------------------------------------

def test_errors_stay_one_line_on_a_pipe(tmp_path, monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    deep = tmp_path / ("a-rather-long-folder-name-" * 4)
    deep.mkdir()
    result = run_cli("run", "--queue", str(deep / "QUEUE.md"), "--noxfile", str(NOXFILE), cwd=tmp_path)
    assert result.code == 2
    line = one_line(result.stderr)
    assert len(line) > 120 and line.startswith("error: cannot read queue file")


def test_problem_lists_stay_one_line_per_problem_on_a_pipe(tmp_path, monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    queue = tmp_path / "QUEUE.md"
    queue.write_text("### STEP A001: A step whose dependency is a long way from being anywhere at all\n"
                     "```\nDepends: STEP A999\nDone: [ ]\n```\n")
    result = run_cli("status", "--queue", str(queue), cwd=tmp_path)
    assert result.code == 2
    lines = result.stderr.splitlines()
    assert len(lines) == 2 and "[unknown-dependency]" in lines[1]


def test_the_gate_table_keeps_a_long_reason_on_one_line_on_a_pipe(scratch, monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    reason = "this gate fails because " + "a long reason that goes on and on " * 4
    scratch.noxfile.write_text(scratch.noxfile.read_text().replace('"this gate fails"', repr(reason)))
    result = scratch.cli("run", "S002")
    assert result.code == 1
    row = next(line for line in result.stderr.splitlines() if line.startswith("failing "))
    assert reason.strip() in row


def closed_pipe() -> int:
    """The writing end of a pipe whose reader has already gone (`| head` that exited)."""
    read, write = os.pipe()
    os.close(read)
    return write


@pytest.mark.parametrize("args", [["status"], ["check"], ["next"]])
def test_a_closed_stderr_pipe_exits_141_not_as_a_gate_failure(scratch, args):
    write = closed_pipe()
    try:
        done = subprocess.run([sys.executable, "-m", "queue_runner", "--queue", str(scratch.queue),
                               "--noxfile", str(scratch.noxfile), *args], cwd=scratch.dir, env=cli_env(),
                              stdout=write, stderr=write, timeout=60, check=False)
    finally:
        os.close(write)
    assert done.returncode == 141


def test_a_closed_stdout_pipe_under_json_is_quiet(scratch):
    write = closed_pipe()
    try:
        done = subprocess.run([sys.executable, "-m", "queue_runner", "--queue", str(scratch.queue),
                               "--noxfile", str(scratch.noxfile), "status", "--json"], cwd=scratch.dir,
                              env=cli_env(), stdout=write, stderr=subprocess.PIPE, timeout=60, check=False)
    finally:
        os.close(write)
    assert done.returncode == 141
    assert done.stderr == b""  # no traceback, no "Exception ignored" from the flush at exit


# --- 6. no noxfile ------------------------------------------------------------------------------

@pytest.fixture
def bare(scratch):
    """A queue file with no noxfile beside it or above the working folder."""
    scratch.noxfile.unlink()
    assert not any((folder / "noxfile.py").exists() for folder in (scratch.dir, *scratch.dir.parents))
    return scratch


def bare_cli(bare, *args):
    return run_cli("--queue", str(bare.queue), *args, cwd=bare.dir)


def test_status_without_a_noxfile_shows_gates_as_unknown(bare):
    result = bare_cli(bare, "--json", "status")
    assert result.code == 0, result.stderr
    doc = result.json()
    assert doc["noxfile"] is None
    assert doc["note"].startswith("gates unknown: no noxfile.py beside") and str(bare.dir) in doc["note"]
    assert {s["gates"] is None for s in doc["steps"]} == {True}
    assert doc["summary"] == {"total": 10, "done": 2, "next": "S001", "state": "gates-unknown"}
    human = bare_cli(bare, "status")
    assert human.code == 0
    assert human.stderr.count("gates unknown: no noxfile.py beside") == 1
    assert "unknown" in next(line for line in human.stderr.splitlines() if line.startswith("S001"))


def test_check_and_next_without_a_noxfile_work_and_run_and_verify_need_one(bare):
    check = bare_cli(bare, "--json", "check")
    assert check.code == 0 and check.json()["problems"] == [] and check.json()["steps"] == 10
    nxt = bare_cli(bare, "--json", "next")
    assert nxt.code == 0
    assert (nxt.json()["state"], nxt.json()["step"]["id"], nxt.json()["nox"]) == ("gates-unknown", "S001", None)
    for args in (["run"], ["verify"]):
        result = bare_cli(bare, "--json", *args)
        assert result.code == 2
        assert "use --noxfile PATH" in result.json()["error"]


def test_check_without_a_noxfile_still_finds_queue_problems(bare):
    bare.queue.write_text(bare.queue.read_text().replace("Depends: STEP S002", "Depends: STEP S999"))
    result = bare_cli(bare, "--json", "check")
    assert result.code == 2
    assert [p["code"] for p in result.json()["problems"]] == ["unknown-dependency"]


# --- 7. an indented Done line -------------------------------------------------------------------

def test_an_indented_box_is_ticked(scratch):
    scratch.queue.write_text(scratch.queue.read_text().replace("\nDone: [ ]\n```\n\n### STEP S002",
                                                               "\n\tDone: [ ]\n```\n\n### STEP S002"))
    assert "\tDone: [ ]" in scratch.queue.read_text()
    result = scratch.cli("--json", "run")
    assert result.code == 0, result.stderr
    assert "\tDone: [x]" in scratch.queue.read_text()


def test_a_box_typo_is_named_with_its_line(scratch):
    scratch.queue.write_text(scratch.queue.read_text().replace("Done: [x]", "Done: [v]", 1))
    result = scratch.cli("--json", "check")
    assert result.code == 2
    (problem,) = [p for p in result.json()["problems"] if p["code"] != "no-gate"]  # S004 has none
    assert problem["code"] == "no-box" and problem["step"] == "S005"
    assert f"line {problem['line']} `Done: [v]` is not a box" in problem["message"]


# --- 8. the status table and the terminal ------------------------------------------------------

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def on_terminal(args: list[str], columns: int) -> str:
    """queue-runner with stderr on a pseudo-terminal `columns` wide; what it wrote, colours removed."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    env = {k: v for k, v in cli_env().items() if k not in ("COLUMNS", "LINES")}
    child = subprocess.Popen([sys.executable, "-m", "queue_runner", *args], cwd=ROOT, env=env,
                             stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=slave)
    os.close(slave)
    chunks = []
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(master)
    assert child.wait(timeout=60) == 0
    return ANSI.sub("", b"".join(chunks).decode("utf-8").replace("\r\n", "\n"))


def table_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if "│" in line or "┿" in line]


def test_status_fits_an_80_column_terminal():
    output = on_terminal(["status", "--queue", str(PROJECT_QUEUE), "--noxfile", str(NOXFILE)], 80)
    lines = table_lines(output)
    assert len(lines) == 2 + 46  # header, rule, one line per step: no wrapped gate lists
    assert max(cell_len(line) for line in lines) <= 80
    b064 = next(line for line in lines if line.startswith("B064"))
    assert re.search(r"│ \d+ gates +│", b064)


def test_a_narrower_terminal_cuts_titles_with_an_ellipsis_and_drops_the_phase():
    output = on_terminal(["status", "--queue", str(PROJECT_QUEUE), "--noxfile", str(NOXFILE)], 60)
    lines = table_lines(output)
    assert max(cell_len(line) for line in lines) <= 60
    assert lines[0].split(" │ ")[:3] == ["step", "title           ", "done"]
    assert any("…" in line for line in lines)


def test_wide_shows_every_gate_and_whole_titles_on_a_narrow_terminal():
    output = on_terminal(["status", "--wide", "--queue", str(PROJECT_QUEUE), "--noxfile", str(NOXFILE)], 60)
    queue = parse.read(PROJECT_QUEUE)
    for step in queue.steps:
        assert step.title in output
    assert "schema-pg16" in output and "…" not in output


def test_a_pipe_without_columns_gets_the_full_table(monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    result = run_cli("status", "--queue", str(PROJECT_QUEUE), "--noxfile", str(NOXFILE))
    assert result.code == 0
    assert "schema-pg16" in result.stderr and "…" not in result.stderr


# --- 9. phases named by any ## heading ----------------------------------------------------------

def test_status_shows_the_frontend_queues_phases(tmp_path):
    queue = tmp_path / "FRONTEND_QUEUE.md"
    shutil.copyfile(GOLDEN / "frontend_queue.md", queue)
    result = run_cli("--json", "status", "--queue", str(queue), cwd=tmp_path)
    assert result.code == 0, result.stderr
    assert [s["phase"] for s in result.json()["steps"]] == ["BOOTSTRAP PHASE"] * 3 + ["SCREENS PHASE"] * 2 + [
        "RELEASE PHASE"]
    human = run_cli("status", "--queue", str(queue), cwd=tmp_path).stderr
    rows = {line.split(" │ ")[0].strip(): line.split(" │ ") for line in human.splitlines() if " │ " in line}
    assert rows["step"][2].strip() == "phase"
    assert [rows[step_id][2].strip() for step_id in ("001", "004", "006")] == ["BOOTSTRAP", "SCREENS", "RELEASE"]


def test_help_documents_the_exit_codes():
    result = run_cli("run", "--help")
    assert result.code == 0
    text = " ".join(result.stdout.split())
    assert "2 the queue file or noxfile is unusable, or the queue file cannot be written" in text
    assert "141 the output pipe closed" in text
