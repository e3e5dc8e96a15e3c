"""The CI workflow (B060) runs the project's own nox gates, on PostgreSQL 16 and 18, and ends
with `queue-runner verify --all`."""

from __future__ import annotations

import re
import shlex
from typing import Any

import yaml

from queue_runner import gates
from tests.queue_runner.conftest import ROOT

WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"


def workflow() -> dict[Any, Any]:
    return yaml.safe_load(WORKFLOW.read_text())


def steps() -> list[dict[str, Any]]:
    (job,) = workflow()["jobs"].values()
    return job["steps"]


def nox_sessions(command: str) -> list[str]:
    words = shlex.split(command)
    if words[:1] != ["nox"] or "-s" not in words:
        return []
    rest = words[words.index("-s") + 1:]
    return [w for w in rest[:next((i for i, w in enumerate(rest) if w.startswith("-")), len(rest))]]


def test_runs_on_push_and_pull_request():
    triggers = workflow()[True]  # YAML 1.1 reads the key `on` as the boolean true
    assert "push" in triggers and "pull_request" in triggers


def test_matrix_covers_postgresql_16_and_18_through_the_embedded_server():
    (job,) = workflow()["jobs"].values()
    assert sorted(job["strategy"]["matrix"]["postgres"]) == ["16", "18"]
    assert job["strategy"]["fail-fast"] is False
    assert job["env"]["PGSERVER_POSTGRES_VERSION"] == "${{ matrix.postgres }}"
    assert job["env"]["CI"] == "true"


def test_has_the_gate_steps_in_the_queue_order():
    names = [s.get("name") for s in steps()]
    wanted = ["Lint", "Type check", "Unit tests", "Kill tests", "API tests", "E2E tests"]
    assert [n for n in names if n in wanted] == wanted


def test_every_nox_session_it_names_exists_and_the_test_gates_are_all_there():
    declared = gates.declared_tags(ROOT / "noxfile.py")
    used: dict[str, list[str]] = {}
    for step in steps():
        for line in (step.get("run") or "").splitlines():
            for session in nox_sessions(line):
                assert session in declared, session
                used.setdefault(step.get("name", ""), []).append(session)
    assert used["Lint"] == ["lint"] and used["Type check"] == ["typecheck"]
    assert "services" in used["Unit tests"] and used["Kill tests"] == ["kill"]
    assert used["API tests"] == ["api"] and used["E2E tests"] == ["e2e"]
    assert {s for sessions in used.values() for s in sessions} >= {
        "lint", "typecheck", "db", "schema", "services", "kill", "migrations", "api", "e2e", "queue-tests"}


def test_checks_out_the_whole_history_for_the_migration_test():
    checkout = next(s for s in steps() if str(s.get("uses", "")).startswith("actions/checkout"))
    assert checkout["with"]["fetch-depth"] == 0


def test_ends_with_queue_runner_check_and_verify_all_over_the_reports():
    runs = [s.get("run", "") for s in steps()]
    assert any(r.strip() == "queue-runner check" for r in runs)
    last = runs[-1]
    assert re.match(r"queue-runner verify --all --every-gate --reuse ", last)
    reports = [r for r in runs if "--report" in r]
    assert len(reports) >= 7 and all('"$REPORTS/' in r for r in reports)
