"""A broken queue file is refused (exit 2) with a problem code per defect; `check` lists them."""

from __future__ import annotations

import textwrap

import pytest

from queue_runner import parse
from queue_runner.selection import structural_problems
from tests.queue_runner.conftest import ROOT, SCRATCH_STEPS, run_cli, scratch_queue


def step(step_id: str, depends: str = "none", box: str = "Done: [ ]", fence: bool = True) -> str:
    body = f"Input: x\nDepends: {depends}\nConstraints:\n  - y\n{box}\n"
    return f"### STEP {step_id}: Title {step_id}\n" + (f"```\n{body}```\n" if fence else body)


def codes(text: str) -> list[str]:
    return [p.code for p in structural_problems(parse.parse(text.encode()))]


def test_a_clean_queue_has_no_problem():
    assert codes(step("A001") + step("A002", "STEP A001")) == []


@pytest.mark.parametrize(("text", "expected"), [
    (step("A001") + step("A001"), ["duplicate-id"]),
    (step("A001", "STEP A002") + step("A002"), ["forward-dependency"]),
    (step("A001", "STEP A001"), ["forward-dependency"]),
    (step("A001") + step("A002", "STEP A999"), ["unknown-dependency"]),
    (step("A001", "whatever"), ["bad-depends"]),
    (step("A001", ""), ["bad-depends"]),
    (step("A001", box="no box here"), ["no-box"]),
    (step("A001", box="Done: [ ]\nDone: [x]"), ["several-boxes"]),
    (step("A001", fence=False), ["no-fence"]),
    ("### STEP A001: open\n```\nDepends: none\nDone: [ ]\n", ["unclosed-fence"]),
    ("### STEP: no id\n" + step("A001"), ["malformed-heading"]),
    ("### STEP A001: x\n```\nInput: y\nDone: [ ]\n```\n", ["no-depends"]),
    ("# nothing here\n\nDone: [ ]\n", ["no-steps"]),
])
def test_each_defect_has_its_code(text, expected):
    assert codes(text) == expected


def test_check_on_both_real_queues_finds_nothing():
    for queue in (ROOT / "BACKEND_EXECUTION_QUEUE.md", ROOT / "tests/queue_runner/golden/user_queue.md"):
        result = run_cli("--json", "check", "--queue", str(queue), "--noxfile", str(ROOT / "noxfile.py"))
        assert result.code == 0, result.stderr
        doc = result.json()
        assert (doc["command"], doc["exit_code"], doc["problems"], doc["steps"]) == ("check", 0, [], 46)


def test_check_reports_steps_without_gates_and_tags_naming_no_step(scratch):
    scratch.noxfile.write_text(scratch.noxfile.read_text() + textwrap.dedent('''

        @nox.session(tags=["S404"])
        def stray(session):
            pass
        '''))
    result = scratch.cli("check", "--json")
    assert result.code == 2
    found = {(p["code"], p["step"]) for p in result.json()["problems"]}
    assert found == {("no-gate", "S004"), ("gate-unknown-step", None)}


def test_check_reports_a_box_ticked_before_its_dependency(scratch):
    steps = [("S001", "a", "none", False), ("S002", "b", "STEP S001", True)]
    scratch.queue.write_text(scratch_queue(steps))
    result = scratch.cli("check", "--json")
    assert result.code == 2
    found = [(p["code"], p["step"]) for p in result.json()["problems"]]
    assert ("done-before-dependency", "S002") in found
    # The scratch noxfile tags steps this two-step queue lacks; nothing else is wrong.
    assert {code for code, _ in found} == {"done-before-dependency", "gate-unknown-step"}


@pytest.mark.parametrize("command", [["status"], ["next"], ["run"], ["run", "S001"], ["verify", "--all"]])
def test_every_command_refuses_a_broken_queue_with_exit_2(scratch, command):
    broken = scratch_queue([*SCRATCH_STEPS, ("S001", "again", "none", False)])
    scratch.queue.write_text(broken)
    result = scratch.cli("--json", *command)
    assert result.code == 2
    doc = result.json()
    assert doc["exit_code"] == 2 and doc["error"]
    assert [p["code"] for p in doc["problems"]] == ["duplicate-id"]
    assert scratch.queue.read_text() == broken
    assert scratch.ran() == []


def test_a_missing_queue_file_is_exit_2(tmp_path):
    result = run_cli("status", "--queue", str(tmp_path / "nope.md"), "--noxfile", str(ROOT / "noxfile.py"))
    assert result.code == 2
    assert "cannot read queue file" in result.stderr


def test_no_queue_file_found_upwards_is_exit_2(tmp_path):
    result = run_cli("--json", "status", cwd=tmp_path)
    assert result.code == 2
    assert result.json()["error"]
