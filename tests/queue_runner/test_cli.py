"""The CLI on a scratch project: a queue file and a tiny noxfile in tmp_path whose sessions
pass, fail, skip, edit the queue or interrupt. Every run goes through a real nox."""

from __future__ import annotations

import json

import pytest

from queue_runner import parse
from tests.queue_runner.conftest import GOLDEN, ROOT, run_cli

STEP_KEYS = {"id", "title", "phase", "line", "done", "depends", "gates", "blocked_by"}
DOC_KEYS = {"version", "command", "queue", "noxfile", "exit_code", "error", "problems", "note"}


def box(scratch, step_id):
    return parse.read(scratch.queue).get(step_id).done


def test_run_ticks_a_passing_step_by_exactly_one_byte(scratch):
    before = scratch.queue.read_bytes()
    result = scratch.cli("--json", "run")
    assert result.code == 0, result.stderr
    after = scratch.queue.read_bytes()
    changed = [i for i, (a, b) in enumerate(zip(before, after, strict=True)) if a != b]
    assert len(changed) == 1 and after[changed[0]:changed[0] + 1] == b"x"
    assert box(scratch, "S001")
    doc = result.json()
    assert set(doc) >= DOC_KEYS | {"state", "step", "sessions", "ticked", "dry_run", "nox"}
    assert (doc["command"], doc["ticked"], doc["step"]["id"], doc["step"]["done"]) == ("run", True, "S001", True)
    assert [(s["name"], s["result"]) for s in doc["sessions"]] == [("passing", "success")]
    assert scratch.ran() == ["passing"]


def test_a_failing_gate_leaves_the_box_empty_and_exits_1(scratch):
    before = scratch.queue.read_bytes()
    result = scratch.cli("--json", "run", "S002")
    assert result.code == 1
    assert scratch.queue.read_bytes() == before
    doc = result.json()
    assert doc["ticked"] is False
    assert [(s["name"], s["result"]) for s in doc["sessions"]] == [("failing", "aborted")]
    assert "not ticked" in doc["reason"]


def test_a_skipped_gate_is_not_a_pass(scratch):
    """nox itself exits 0 here; the report says "skipped", and skipped proves nothing."""
    before = scratch.queue.read_bytes()
    result = scratch.cli("--json", "run", "S003")
    assert result.code == 1
    assert scratch.queue.read_bytes() == before
    assert [(s["name"], s["result"]) for s in result.json()["sessions"]] == [("skipping", "skipped")]


def test_one_skipped_session_among_passing_ones_is_not_a_pass(scratch):
    before = scratch.queue.read_bytes()
    result = scratch.cli("--json", "run", "S008")
    assert result.code == 1
    assert scratch.queue.read_bytes() == before
    assert sorted(scratch.ran()) == ["passing", "skipping"]


def test_a_step_without_gate_is_never_ticked(scratch):
    before = scratch.queue.read_bytes()
    result = scratch.cli("--json", "run", "S004")
    assert result.code == 3
    assert result.json()["state"] == "no-gate"
    assert scratch.queue.read_bytes() == before
    assert scratch.ran() == []


@pytest.mark.parametrize(("args", "state", "code"), [
    (["run", "S009"], "blocked", 3),
    (["run", "S005"], "done", 3),
    (["run", "S404"], "unknown", 2),
])
def test_run_refuses_what_it_may_not_run(scratch, args, state, code):
    before = scratch.queue.read_bytes()
    result = scratch.cli("--json", *args)
    assert result.code == code
    assert result.json()["state"] == state
    assert scratch.queue.read_bytes() == before
    assert scratch.ran() == []


def test_blocked_step_names_what_blocks_it(scratch):
    doc = scratch.cli("--json", "run", "S009").json()
    assert doc["step"]["blocked_by"] == ["S002"]


def test_run_without_step_takes_the_first_empty_box_and_does_not_skip_past_it(scratch):
    assert scratch.cli("run").code == 0  # S001
    result = scratch.cli("--json", "run")  # S002 fails: the queue stops there
    assert result.code == 1 and result.json()["step"]["id"] == "S002"
    result = scratch.cli("--json", "run")
    assert result.code == 1 and result.json()["step"]["id"] == "S002"
    assert scratch.ran() == ["passing", "failing", "failing"]


def test_all_done_is_exit_3(scratch):
    text = scratch.queue.read_text().replace("Done: [ ]\n```", "Done: [x]\n```")
    scratch.queue.write_text(text)
    for args in (["next"], ["run"]):
        result = scratch.cli("--json", *args)
        assert result.code == 3
        assert result.json()["state"] == "all-done"


def test_dry_run_and_next_run_nothing_and_change_nothing(scratch):
    before = scratch.queue.read_bytes()
    dry = scratch.cli("--json", "run", "--dry-run")
    nxt = scratch.cli("--json", "next")
    assert (dry.code, nxt.code) == (0, 0)
    for doc in (dry.json(), nxt.json()):
        assert doc["state"] == "runnable" and doc["step"]["id"] == "S001"
        assert doc["step"]["gates"] == ["passing"]
        assert doc["nox"][-2:] == ["--sessions", "passing"]
    assert dry.json()["dry_run"] is True and dry.json()["ticked"] is False
    assert scratch.queue.read_bytes() == before
    assert scratch.ran() == []
    assert sorted(p.name for p in scratch.dir.iterdir()) == ["QUEUE.md", "noxfile.py"]


def test_queue_edited_while_gates_run_is_not_ticked(scratch):
    result = scratch.cli("--json", "run", "S006")
    assert result.code == 2
    text = scratch.queue.read_text()
    assert text.endswith("edited while the gate ran\n")
    assert not box(scratch, "S006")


def test_interrupt_is_exit_130_and_ticks_nothing(scratch):
    before = scratch.queue.read_bytes()
    result = scratch.cli("--json", "run", "S007", env={"SCRATCH_INTERRUPT": "1"}, timeout=60)
    assert result.code == 130
    assert result.json()["exit_code"] == 130
    assert scratch.queue.read_bytes() == before


def test_nesting_too_deep_refuses_to_run_gates(scratch):
    result = scratch.cli("--json", "run", "S001", env={"QUEUE_RUNNER_DEPTH": "3"})
    assert result.code == 2
    assert "nested" in result.json()["error"]
    assert scratch.ran() == []


def test_status_json_schema_and_summary(scratch):
    result = scratch.cli("status", "--json")
    assert result.code == 0
    doc = result.json()
    assert set(doc) == DOC_KEYS | {"summary", "steps"}
    assert doc["summary"] == {"total": 10, "done": 2, "next": "S001", "state": "runnable"}
    assert all(set(step) == STEP_KEYS for step in doc["steps"])
    by_id = {s["id"]: s for s in doc["steps"]}
    assert by_id["S008"]["gates"] == ["passing", "skipping"]
    assert by_id["S004"]["gates"] == []
    assert by_id["S009"]["blocked_by"] == ["S002"]
    assert by_id["S005"]["done"] is True
    assert scratch.ran() == []


def test_human_output_goes_to_stderr_only(scratch):
    result = scratch.cli("status")
    assert result.code == 0
    assert result.stdout == ""
    assert "S009" in result.stderr and "2/10 steps done" in result.stderr


def test_options_work_before_and_after_the_command(scratch):
    a = run_cli("--json", "--queue", str(scratch.queue), "--noxfile", str(scratch.noxfile), "status")
    b = run_cli("status", "--queue", str(scratch.queue), "--json", "--noxfile", str(scratch.noxfile))
    assert a.code == b.code == 0
    assert a.json() == b.json()


def test_defaults_find_the_queue_and_noxfile_from_a_subdirectory():
    result = run_cli("--json", "status", cwd=ROOT / "tests" / "queue_runner")
    assert result.code == 0, result.stderr
    doc = result.json()
    assert doc["queue"].endswith("BACKEND_EXECUTION_QUEUE.md")
    assert doc["noxfile"] == str(ROOT / "noxfile.py")
    assert doc["summary"]["total"] == 46


def test_the_users_original_queue_reads_with_our_gates():
    result = run_cli("--json", "status", "--queue", str(GOLDEN / "user_queue.md"),
                     "--noxfile", str(ROOT / "noxfile.py"))
    assert result.code == 0, result.stderr
    steps = result.json()["steps"]
    assert len(steps) == 46 and all(s["gates"] for s in steps)


# --- verify ----------------------------------------------------------------------------------

def test_verify_passes_while_ticked_gates_still_pass(scratch):
    result = scratch.cli("--json", "verify", "--all")
    assert result.code == 0, result.stderr
    doc = result.json()
    assert [(s["id"], s["ok"]) for s in doc["steps"]] == [("S005", True), ("S010", True)]
    assert sorted(scratch.ran()) == ["also-passing", "toggled"]


def test_verify_reports_a_box_that_is_no_longer_true(scratch):
    (scratch.dir / "fail-toggled").touch()
    before = scratch.queue.read_bytes()
    result = scratch.cli("--json", "verify")
    assert result.code == 1
    doc = result.json()
    assert [(s["id"], s["ok"]) for s in doc["steps"]] == [("S005", False), ("S010", True)]
    assert doc["steps"][0]["failures"][0]["name"] == "toggled"
    assert scratch.queue.read_bytes() == before  # verify reports; it never edits


def test_verify_named_steps_only(scratch):
    result = scratch.cli("--json", "verify", "S010")
    assert result.code == 0
    assert scratch.ran() == ["also-passing"]
    assert scratch.cli("--json", "verify", "S001").code == 3  # not ticked: nothing to verify
    assert scratch.cli("--json", "verify", "S404").code == 2


def test_verify_with_nothing_ticked_passes(scratch):
    scratch.queue.write_text(scratch.queue.read_text().replace("Done: [x]", "Done: [ ]"))
    result = scratch.cli("--json", "verify", "--all")
    assert result.code == 0
    assert result.json()["steps"] == []
    assert scratch.ran() == []


def test_verify_every_gate_runs_each_session_once_and_fails_on_unticked_failures(scratch):
    result = scratch.cli("--json", "verify", "--all", "--every-gate")
    assert result.code == 1
    ran = scratch.ran()
    assert sorted(ran) == sorted(set(ran))  # one nox call, each session once
    assert "untagged" not in ran
    doc = result.json()
    assert all(s["ok"] for s in doc["steps"])
    failing = {s["name"]: s["result"] for s in doc["other_sessions"] if s["result"] != "success"}
    assert failing["failing"] == "aborted" and failing["skipping"] == "skipped"


def test_verify_reuses_earlier_reports_instead_of_running_again(scratch):
    report = scratch.dir / "earlier.json"
    report.write_text(json.dumps({"result": 1, "sessions": [
        {"name": "toggled", "result": "success", "signatures": ["toggled"]}]}))
    result = scratch.cli("--json", "verify", "--all", "--reuse", str(report))
    assert result.code == 0
    assert scratch.ran() == ["also-passing"]
    assert result.json()["reused"] == ["toggled"]
    report.write_text(json.dumps({"result": 0, "sessions": [{"name": "toggled", "result": "failed"}]}))
    assert scratch.cli("--json", "verify", "S005", "--reuse", str(report)).code == 1
    assert scratch.cli("--json", "verify", "--reuse", str(scratch.dir / "missing.json")).code == 2


def test_run_judges_gates_from_an_earlier_report_without_running_them(scratch):
    report = scratch.dir / "build.json"
    report.write_text(json.dumps({"result": 1, "sessions": [
        {"name": "passing", "result": "success"}, {"name": "failing", "result": "failed"}]}))
    result = scratch.cli("--json", "run", "--reuse", str(report))
    assert result.code == 0 and result.json()["ticked"] is True
    assert scratch.ran() == []  # judged from the report: nothing ran again
    assert box(scratch, "S001")
    # A gate that failed in the report is a failure, and leaves the box empty.
    failed = scratch.cli("--json", "run", "S002", "--reuse", str(report))
    assert failed.code == 1 and not box(scratch, "S002")
    # A gate the report does not hold is run now; a skip there still proves nothing.
    skipped = scratch.cli("--json", "run", "S003", "--reuse", str(report))
    assert skipped.code == 1 and scratch.ran() == ["skipping"] and not box(scratch, "S003")
