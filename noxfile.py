"""Gate sessions. Each is tagged with the queue steps it proves (queue_runner reads the tags).

Sessions run in the current environment (the one `pip install -e '.[dev]'` made), so a
gate costs its own run time only; CI and developers share the exact same commands."""

from __future__ import annotations

import sys

import nox

nox.options.default_venv_backend = "none"
nox.options.sessions = ["lint", "typecheck", "tests"]
nox.options.error_on_missing_interpreters = True

PY = sys.executable


def pytest(session: nox.Session, *paths: str) -> None:
    session.run(PY, "-m", "pytest", *paths, *session.posargs)


@nox.session(tags=["B060"])
def lint(session: nox.Session) -> None:
    session.run(PY, "-m", "ruff", "check", ".")


@nox.session(tags=["B060"])
def typecheck(session: nox.Session) -> None:
    session.run(PY, "-m", "mypy")


@nox.session(tags=["B001", "B002", "B003", "B004", "B005", "B010", "B011"])
def schema(session: nox.Session) -> None:
    """The schema loads, the gate checks pass, enums match the CHECK constraints."""
    pytest(session, "tests/schema")


@nox.session(name="schema-pg16", tags=["B002", "B005"])
def schema_pg16(session: nox.Session) -> None:
    """The same schema and kill tests on PostgreSQL 16 (the embedded server ships 16 and 18)."""
    session.env["PGSERVER_POSTGRES_VERSION"] = "16"
    pytest(session, "tests/schema", "tests/invariants")


@nox.session(tags=["B021", "B022", "B023", "B024", "B025"])
def kill(session: nox.Session) -> None:
    """Kill tests: the database refuses every broken invariant, by SQLSTATE."""
    pytest(session, "tests/invariants")


@nox.session
def tests(session: nox.Session) -> None:
    """Every test suite once, against a real PostgreSQL."""
    pytest(session)
