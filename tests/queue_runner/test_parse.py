"""The parser on golden files: the user's queue, ours, a CRLF copy, one with no final newline,
and one full of decoy `Done: [ ]` lines. Each golden input has a `.expected.json` beside it;
regenerate them with `python -m tests.queue_runner.test_parse` and review the diff."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from queue_runner import parse
from queue_runner.model import Queue
from queue_runner.selection import structural_problems
from tests.queue_runner.conftest import GOLDEN, ROOT

GOLDEN_INPUTS = ["user_queue.md", "crlf_queue.md", "no_final_newline.md", "decoys.md", "frontend_queue.md"]
PROJECT_QUEUE = ROOT / "BACKEND_EXECUTION_QUEUE.md"
USER_QUEUE = GOLDEN / "user_queue.md"

# Titles that named the user's tools; every other title is kept word for word.
RENAMED_TITLES = {"B030": ("Setup tRPC Router", "Setup flask-smorest Api")}


def view(queue: Queue) -> dict[str, Any]:
    """Everything the parser extracts, in a form a golden file can hold."""
    return {
        "steps": [{"id": s.id, "title": s.title, "phase": s.phase, "line": s.line, "depends": list(s.depends),
                   "done": s.done, "box_offset": s.box_offset, "fields": s.fields} for s in queue.steps],
        "problems": [p.as_dict() for p in queue.problems],
    }


def expected(name: str) -> dict[str, Any]:
    return json.loads((GOLDEN / f"{name}.expected.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("name", GOLDEN_INPUTS)
def test_golden_parse_matches_expected(name):
    assert view(parse.read(GOLDEN / name)) == expected(name)


@pytest.mark.parametrize("name", GOLDEN_INPUTS)
def test_every_box_offset_points_between_brackets(name):
    queue = parse.read(GOLDEN / name)
    assert queue.steps
    for step in queue.steps:
        assert step.box_offset is not None
        assert queue.data[step.box_offset - 7:step.box_offset] == b"Done: ["
        assert queue.data[step.box_offset:step.box_offset + 2] in (b" ]", b"x]", b"X]")
        assert (queue.data[step.box_offset:step.box_offset + 1] != b" ") == step.done


def test_user_queue_has_all_46_steps_in_order_with_a_linear_chain():
    queue = parse.read(USER_QUEUE)
    ids = [s.id for s in queue.steps]
    assert len(ids) == 46
    assert ids[:5] == ["B001", "B002", "B003", "B004", "B005"] and ids[-1] == "B064"
    assert structural_problems(queue) == []
    assert queue.steps[0].depends == ()
    for before, step in zip(queue.steps, queue.steps[1:], strict=False):
        assert step.depends == (before.id,)
    assert not queue.done_ids
    assert {s.phase for s in queue.steps} == {
        "PHASE 0: SCHEMA DEPLOYMENT", "PHASE 1: BACKEND SERVICES", "PHASE 2: API LAYER",
        "PHASE 3: INTEGRATION", "PHASE 4: DEPLOYMENT PREP"}


def test_crlf_copy_parses_to_the_same_steps_as_the_original():
    original, crlf = parse.read(USER_QUEUE), parse.read(GOLDEN / "crlf_queue.md")
    assert b"\r\n" in crlf.data and b"\n" in original.data
    assert [(s.id, s.title, s.phase, s.line, s.depends, s.done) for s in crlf.steps] == [
        (s.id, s.title, s.phase, s.line, s.depends, s.done) for s in original.steps]
    assert [s.fields["Output"] for s in crlf.steps] == [s.fields["Output"] for s in original.steps]


def test_no_final_newline_last_step_is_read():
    queue = parse.read(GOLDEN / "no_final_newline.md")
    assert not queue.data.endswith(b"\n")
    assert [(s.id, s.done, s.depends) for s in queue.steps] == [("T001", True, ()), ("T002", False, ("T001",))]
    assert queue.problems == ()


def test_decoys_are_not_steps_and_not_boxes():
    queue = parse.read(GOLDEN / "decoys.md")
    assert [s.id for s in queue.steps] == ["D001", "D002", "D003", "D004"]
    assert [s.done for s in queue.steps] == [False, True, True, False]
    assert queue.problems == ()
    decoy_boxes = [m.start() + 7 for m in re.finditer(rb"Done: \[[ xX]\]", queue.data)]
    assert len(decoy_boxes) > 10  # the file really is full of them
    assert {s.box_offset for s in queue.steps} < set(decoy_boxes)
    assert queue.get("D002").title == "A ticked step, title with [brackets] and `code`"
    assert queue.get("D003").depends == ("D001", "D002")
    assert "Done: [ ] indented" in queue.get("D001").fields["Constraints"]


def test_project_queue_keeps_every_id_title_order_and_dependency_of_the_users():
    ours, users = parse.read(PROJECT_QUEUE), parse.read(USER_QUEUE)
    assert structural_problems(ours) == []
    assert [s.id for s in ours.steps] == [s.id for s in users.steps]
    assert [s.depends for s in ours.steps] == [s.depends for s in users.steps]
    assert [s.phase for s in ours.steps] == [s.phase for s in users.steps]
    for mine, theirs in zip(ours.steps, users.steps, strict=True):
        old, new = RENAMED_TITLES.get(mine.id, (theirs.title, theirs.title))
        assert theirs.title == old
        assert mine.title == new
        assert set(mine.fields) == set(theirs.fields) == {"Input", "Output", "Depends", "Constraints"}


def test_project_queue_keeps_the_number_of_constraints_of_each_step():
    """Intent kept: each of the user's constraints has a rewritten counterpart (some gain a line)."""
    ours, users = parse.read(PROJECT_QUEUE), parse.read(USER_QUEUE)

    def count(step):
        return sum(1 for line in step.fields["Constraints"].splitlines() if line.strip().startswith("- "))

    for mine, theirs in zip(ours.steps, users.steps, strict=True):
        assert count(mine) >= count(theirs), mine.id


def test_project_queue_names_our_tools_not_the_users():
    ours = parse.read(PROJECT_QUEUE)
    foreign = re.compile(r"\.ts\b|\bnpm\b|tRPC|\bZod\b|\bsrc/|\bpg library\b")
    for step in ours.steps:
        for name in ("Input", "Output", "Constraints"):
            assert not foreign.search(step.fields[name]), (step.id, name, step.fields[name])
        assert not foreign.search(step.title), step.id


def test_project_queue_outputs_are_python_paths_where_files_are_made():
    ours = parse.read(PROJECT_QUEUE)
    outputs = {s.id: s.fields["Output"] for s in ours.steps}
    assert outputs["B010"].startswith("hustlexp/db/")
    assert outputs["B011"] == "hustlexp/domain.py"
    for step_id in ("B012", "B015", "B016", "B017", "B018", "B019", "B020"):
        assert re.fullmatch(r"hustlexp/services/[a-z_]+\.py", outputs[step_id]), step_id
    for step_id in ("B031", "B032", "B033", "B034", "B035", "B036", "B037", "B038", "B039", "B062"):
        assert re.fullmatch(r"hustlexp/api/[a-z_]+\.py", outputs[step_id]), step_id
    for step_id in ("B021", "B022", "B023", "B024"):
        assert outputs[step_id].startswith("tests/invariants/test_"), step_id
    for step_id in ("B040", "B041", "B042"):
        assert outputs[step_id].startswith("tests/api/test_"), step_id
    for step_id in ("B050", "B051", "B052", "B053", "B054"):
        assert outputs[step_id].startswith("tests/e2e/test_"), step_id


def test_lone_carriage_returns_are_line_breaks_too():
    data = USER_QUEUE.read_bytes().replace(b"\n", b"\r")
    queue = parse.parse(data)
    assert [s.id for s in queue.steps] == [s.id for s in parse.read(USER_QUEUE).steps]
    assert all(data[s.box_offset:s.box_offset + 1] == b" " for s in queue.steps)


def test_utf8_before_a_box_keeps_byte_offsets_exact():
    data = "### STEP U001: Ünïcödé — §3 → ok\n```\nInput: ✓✓✓\nDepends: none\nDone: [ ]\n```\n".encode()
    (step,) = parse.parse(data).steps
    assert step.title == "Ünïcödé — §3 → ok"
    assert data[step.box_offset:step.box_offset + 1] == b" "
    assert data[:step.box_offset].endswith(b"Done: [")


FRONTEND_QUEUE = GOLDEN / "frontend_queue.md"


def test_phase_comes_from_any_level_two_heading_holding_the_step():
    """The frontend queue names phases `## BOOTSTRAP PHASE (Steps 001-010)`, not `## PHASE n:`."""
    queue = parse.read(FRONTEND_QUEUE)
    assert [(s.id, s.phase) for s in queue.steps] == [
        ("001", "BOOTSTRAP PHASE"), ("002", "BOOTSTRAP PHASE"), ("003", "BOOTSTRAP PHASE"),
        ("004", "SCREENS PHASE"), ("005", "SCREENS PHASE"), ("006", "RELEASE PHASE")]
    assert structural_problems(queue) == []


@pytest.mark.parametrize(("headings", "phase"), [
    (b"## SETUP\n\n# Appendix\n", None),
    (b"# PHASE 3: TOP LEVEL (Steps X001-X009)\n", "PHASE 3: TOP LEVEL"),
    (b"# Queue\n\n## Release work\n", "Release work"),
])
def test_the_phase_is_the_nearest_heading_that_names_one(headings, phase):
    data = headings + b"\n### STEP X001: Under it\n```\nDepends: none\nDone: [ ]\n```\n"
    assert parse.parse(data).steps[0].phase == phase


def test_an_indented_done_line_is_the_box():
    queue = parse.read(FRONTEND_QUEUE)
    for step_id, indent in (("004", b"\t"), ("005", b"  ")):
        step = queue.get(step_id)
        assert queue.data[:step.box_offset].endswith(b"\n" + indent + b"Done: [")
        assert not step.done
    assert queue.problems == ()


def test_a_line_that_is_almost_a_box_is_named_with_its_line():
    data = b"### STEP X001: Typo in the box\n```\nDepends: none\n  Done [ ]\n```\n"
    queue = parse.parse(data)
    (problem,) = queue.problems
    assert (problem.code, problem.line, problem.step) == ("no-box", 4, "X001")
    assert "line 4 `Done [ ]` is not a box" in problem.message


BOM = b"\xef\xbb\xbf"


@pytest.mark.parametrize("start", [b"", b"# Title\n\n"])
def test_a_byte_order_mark_at_the_start_is_ignored(start):
    """Directly before the first STEP heading it used to hide that step (45 of 46 steps)."""
    plain = start + USER_QUEUE.read_bytes().split(b"\n## PHASE 0", 1)[1].split(b"\n", 1)[1].lstrip(b"\n")
    assert plain.startswith(start + b"### STEP B001")
    with_bom = parse.parse(BOM + plain)
    without = parse.parse(plain)
    assert with_bom.steps[0].id == "B001"
    assert [(s.id, s.line, s.depends) for s in with_bom.steps] == [
        (s.id, s.line, s.depends) for s in without.steps]
    assert [s.box_offset for s in with_bom.steps] == [s.box_offset + 3 for s in without.steps]
    assert structural_problems(with_bom) == []


def regenerate() -> None:
    for name in GOLDEN_INPUTS:
        target = GOLDEN / f"{name}.expected.json"
        target.write_text(json.dumps(view(parse.read(GOLDEN / name)), indent=1, ensure_ascii=False) + "\n",
                          encoding="utf-8")
        print(f"wrote {target}")


if __name__ == "__main__":
    regenerate()
