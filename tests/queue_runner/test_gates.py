"""Gate discovery: the static reader, its fallback to nox's own listing, and the project's
noxfile layout (every test directory runs, `nox` runs `queue` only, `queue` is no gate)."""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import pytest

from queue_runner import gates, parse
from queue_runner.model import Queue
from tests.queue_runner.conftest import ROOT

NOXFILE = ROOT / "noxfile.py"


def write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "noxfile.py"
    path.write_text("import nox\nnox.options.default_venv_backend = 'none'\n" + textwrap.dedent(body))
    return path


def test_static_reader_takes_names_tags_and_aliases(tmp_path):
    path = write(tmp_path, '''
        import nox as n
        from nox import session as make_session

        @nox.session(tags=["A1", "A2"])
        def plain(session): pass

        @n.session(name="renamed-one", tags=("A2",))
        def renamed(session): pass

        @make_session(tags=["A3"], reuse_venv=True)
        def imported(session): pass

        @nox.session
        def bare(session): pass

        if True:
            @nox.session(tags=["A1"])
            def conditional(session): pass
        ''')
    found = gates.discover(path, ["A1", "A2", "A3", "A4"])
    assert found.source == "static"
    assert found.by_step == {"A1": ("plain", "conditional"), "A2": ("plain", "renamed-one"), "A3": ("imported",)}
    assert found.of("A4") == ()
    assert found.union(["A3", "A1"]) == ("plain", "imported", "conditional")


@pytest.mark.parametrize("body", [
    '''
    TAGS = ["A1"]
    @nox.session(tags=TAGS)
    def computed(session): pass
    ''',
    '''
    @nox.session(tags=["A1"])
    @nox.parametrize("x", [1, 2])
    def parametrized(session, x): pass
    ''',
    '''
    def make(tag):
        def run(session): pass
        return run
    for tag in ["A1"]:
        nox.session(name=f"made-{tag}", tags=[tag])(make(tag))
    ''',
    '''
    @nox.session(python=["3.11"], tags=["A1"])
    def interpreters(session): pass
    ''',
])
def test_anything_not_static_is_listed_by_nox_itself(tmp_path, body):
    path = write(tmp_path, body)
    found = gates.discover(path, ["A1"])
    assert found.source == "nox"
    assert len(found.of("A1")) >= 1


def test_a_noxfile_nox_cannot_load_is_a_gate_error(tmp_path):
    path = write(tmp_path, '''
        TAGS = ["A1"]
        raise RuntimeError("broken noxfile")
        @nox.session(tags=TAGS)
        def computed(session): pass
        ''')
    with pytest.raises(gates.GateError):
        gates.discover(path, ["A1"])


def test_syntax_error_is_a_gate_error(tmp_path):
    path = tmp_path / "noxfile.py"
    path.write_text("def (:\n")
    with pytest.raises(gates.GateError):
        gates.discover(path, ["A1"])


def project_queue() -> Queue:
    return parse.read(ROOT / "BACKEND_EXECUTION_QUEUE.md")


def test_static_reading_of_the_project_noxfile_equals_nox_listing():
    ids = [s.id for s in project_queue().steps]
    static = gates.discover(NOXFILE, ids)
    listed = gates._discover_with_nox(NOXFILE, ids)
    assert static.source == "static"
    assert static.by_step == listed.by_step
    assert static.order == listed.order


def test_every_project_step_has_a_gate_and_file_steps_check_their_files():
    queue = project_queue()
    found = gates.discover(NOXFILE, [s.id for s in queue.steps])
    for step in queue.steps:
        assert found.of(step.id), step.id
        if "/" in step.field("Output") and "`" not in step.field("Output"):
            assert f"files-{step.id}" in found.of(step.id), step.id
    for phase_gate in ("B005", "B025", "B043", "B055", "B064"):
        assert len(found.of(phase_gate)) >= 2, phase_gate


def test_phase_gates_cover_every_gate_of_their_phase():
    """A phase gate runs everything its phase needs: each test session gating a step of the
    phase (files-* checks aside) gates the phase's last step as well."""
    queue = project_queue()
    found = gates.discover(NOXFILE, [s.id for s in queue.steps])
    phases: dict[str | None, list[str]] = {}
    for step in queue.steps:
        phases.setdefault(step.phase, []).append(step.id)
    for ids in phases.values():
        last = set(found.of(ids[-1]))
        for step_id in ids[:-1]:
            sessions = {s for s in found.of(step_id) if not s.startswith("files-")}
            assert sessions <= last, (step_id, ids[-1], sessions - last)


def _noxfile_assignment(name: str) -> object:
    tree = ast.parse(NOXFILE.read_text())
    for node in tree.body:
        names = {t.attr if isinstance(t, ast.Attribute) else getattr(t, "id", None) for t in
                 getattr(node, "targets", ())}
        if isinstance(node, ast.Assign) and name in names:
            return ast.literal_eval(node.value)
    raise AssertionError(f"{name} is not assigned in noxfile.py")


def test_every_test_directory_is_run_by_a_gate_session():
    suites = _noxfile_assignment("SUITES")
    assert isinstance(suites, dict)
    covered = {path for paths in suites.values() for path in paths}
    with_tests = {str(p.parent.relative_to(ROOT)) for p in (ROOT / "tests").glob("*/test_*.py")}
    assert with_tests <= covered, with_tests - covered
    declared = gates.declared_tags(NOXFILE)
    for session in suites:
        assert declared.get(session), f"{session} runs tests but gates no step"


def test_default_nox_is_the_queue_session_and_queue_gates_nothing():
    assert _noxfile_assignment("sessions") == ["queue"]
    declared = gates.declared_tags(NOXFILE)
    assert declared["queue"] == ()
    assert declared["tests"] == ()


def test_report_reading_and_judging():
    run = gates.GateRun(("nox",), 1, (
        gates.SessionResult("a", "success"), gates.SessionResult("b", "skipped", "why"),
        gates.SessionResult("c", "failed"), gates.SessionResult("d-3.11", "success", signatures=("d",))))
    assert run.failures(["a"]) == ()
    assert run.failures(["d"]) == ()
    assert [f.result for f in run.failures(["a", "b", "c", "e"])] == ["skipped", "failed", "missing"]
    assert [f.result for f in run.failures([])] == ["missing"]  # nothing proves nothing


def test_unreadable_report_means_no_results(tmp_path):
    bad = tmp_path / "r.json"
    bad.write_text("{not json")
    assert gates.read_report(bad) == ([], False)
    assert gates.read_report(tmp_path / "absent.json") == ([], False)
    bad.write_text('{"sessions": [{"name": "x", "result": "success"}, {"oops": 1}]}')
    results, found = gates.read_report(bad)
    assert found and [r.name for r in results] == ["x"]
