"""Gate sessions, each tagged with the queue steps it proves. queue_runner reads the tags
(`queue-runner status` shows them) and ticks a step only when every session tagged with it
ran and passed.

`nox` with no arguments runs one session, `queue`: it lints the queue file, then runs every
gate session of every step in ONE inner nox call (`queue-runner verify --all --every-gate`)
and judges each ticked box from those results. So lint, types, every test directory, the
PostgreSQL 16 run and the queue verification all run, and nothing runs twice. Run any gate
alone with `nox -s <session>` or `nox -t <STEP>`.

Sessions run in the current environment (the one `pip install -e '.[dev]'` made): a gate
costs its own run time only, and CI and developers share the exact same commands. Never tag
`queue` with a step: verifying would then run itself."""

from __future__ import annotations

import glob
import shutil
import sys
import tempfile
from pathlib import Path

import nox

nox.options.default_venv_backend = "none"
nox.options.sessions = ["queue"]
nox.options.error_on_missing_interpreters = True

PY = sys.executable
ROOT = Path(__file__).parent

# Which session runs which test directory; tests/queue_runner checks that every directory
# holding tests appears here, so a new suite cannot silently drop out of `nox`.
SUITES = {
    "schema": ("tests/schema",),
    "kill": ("tests/invariants",),
    "services": ("tests/services", "tests/fakes"),
    "api": ("tests/api",),
    "e2e": ("tests/e2e",),
    "faults": ("tests/faults",),
    "queue-tests": ("tests/queue_runner",),
    # Slow (real servers, real signals), so queue-tests leaves it to a session of its own.
    "queue-interrupt": ("tests/queue_runner/test_interrupt.py",),
    "migrations": ("tests/migrations",),
}


# On Ctrl-C nox gives a command 0.3 s before SIGTERM and 0.2 s more before SIGKILL: too short for
# a test server or `hustlexp db` to stop its PostgreSQL, which then outlives the run. Commands
# that start a database get time to stop it.
STOP_TIMEOUTS = {"interrupt_timeout": 30.0, "terminate_timeout": 10.0}


def pytest(session: nox.Session, *paths: str) -> None:
    session.run(PY, "-m", "pytest", *paths, *session.posargs, **STOP_TIMEOUTS)


def require(session: nox.Session, *patterns: str) -> None:
    """Fail unless every glob pattern matches at least one file under the repository root."""
    missing = [p for p in patterns if not glob.glob(p, root_dir=ROOT)]
    if missing:
        session.error(f"missing output: {', '.join(missing)}")
    session.log(f"present: {', '.join(patterns)}")


# --- whole-repository checks ------------------------------------------------------------------

@nox.session(tags=["B060", "B064"])
def lint(session: nox.Session) -> None:
    session.run(PY, "-m", "ruff", "check", ".")


@nox.session(tags=["B060", "B064"])
def typecheck(session: nox.Session) -> None:
    session.run(PY, "-m", "mypy")


# --- outputs of file-producing steps (the tests that exercise them are tagged below) -----------

@nox.session(name="files-B010", tags=["B010"])
def files_b010(session: nox.Session) -> None:
    require(session, "hustlexp/db/__init__.py", "hustlexp/db/pool.py", "hustlexp/db/errors.py")


@nox.session(name="files-B011", tags=["B011"])
def files_b011(session: nox.Session) -> None:
    require(session, "hustlexp/domain.py")


@nox.session(name="files-B012", tags=["B012"])
def files_b012(session: nox.Session) -> None:
    require(session, "hustlexp/services/task.py", "tests/services/test_task.py")


@nox.session(name="files-B013", tags=["B013"])
def files_b013(session: nox.Session) -> None:
    require(session, "hustlexp/services/escrow.py", "hustlexp/services/payments.py",
            "tests/services/test_money.py", "tests/services/test_payments.py")


@nox.session(name="files-B014", tags=["B014"])
def files_b014(session: nox.Session) -> None:
    require(session, "hustlexp/services/proof.py", "hustlexp/services/storage.py",
            "tests/services/test_proof.py")


@nox.session(name="files-B015", tags=["B015"])
def files_b015(session: nox.Session) -> None:
    require(session, "hustlexp/services/xp.py", "tests/services/test_xp.py")


@nox.session(name="files-B016", tags=["B016"])
def files_b016(session: nox.Session) -> None:
    require(session, "hustlexp/services/trust.py", "tests/services/test_trust.py")


@nox.session(name="files-B017", tags=["B017"])
def files_b017(session: nox.Session) -> None:
    require(session, "hustlexp/services/badge.py", "tests/services/test_badge.py")


@nox.session(name="files-B018", tags=["B018"])
def files_b018(session: nox.Session) -> None:
    require(session, "hustlexp/services/dispute.py", "tests/services/test_dispute.py")


@nox.session(name="files-B019", tags=["B019"])
def files_b019(session: nox.Session) -> None:
    require(session, "hustlexp/services/stripe_webhooks.py", "tests/services/test_money.py")


@nox.session(name="files-B020", tags=["B020"])
def files_b020(session: nox.Session) -> None:
    require(session, "hustlexp/services/user.py", "tests/services/test_user.py")


@nox.session(name="files-B021", tags=["B021"])
def files_b021(session: nox.Session) -> None:
    require(session, "tests/invariants/test_inv1_*.py")


@nox.session(name="files-B022", tags=["B022"])
def files_b022(session: nox.Session) -> None:
    require(session, "tests/invariants/test_inv2_*.py")


@nox.session(name="files-B023", tags=["B023"])
def files_b023(session: nox.Session) -> None:
    require(session, "tests/invariants/test_inv3_*.py")


@nox.session(name="files-B024", tags=["B024"])
def files_b024(session: nox.Session) -> None:
    require(session, "tests/invariants/test_terminal_task.py", "tests/invariants/test_terminal_escrow.py",
            "tests/invariants/test_append_only.py")


@nox.session(name="files-B025", tags=["B025"])
def files_b025(session: nox.Session) -> None:
    require(session, *(f"hustlexp/services/{noun}.py" for noun in (
        "task", "escrow", "payments", "proof", "xp", "trust", "badge", "dispute", "stripe_webhooks", "user",
        "notification")), "tests/invariants/test_inv[123]_*.py", "tests/invariants/test_terminal_*.py")


@nox.session(name="files-B030", tags=["B030"])
def files_b030(session: nox.Session) -> None:
    require(session, "hustlexp/app.py", "hustlexp/api/base.py", "tests/api/test_app.py")


@nox.session(name="files-B031", tags=["B031"])
def files_b031(session: nox.Session) -> None:
    require(session, "hustlexp/api/auth.py", "tests/api/test_auth*.py")


@nox.session(name="files-B032", tags=["B032"])
def files_b032(session: nox.Session) -> None:
    require(session, "hustlexp/api/tasks.py")


@nox.session(name="files-B033", tags=["B033"])
def files_b033(session: nox.Session) -> None:
    require(session, "hustlexp/api/escrows.py")


@nox.session(name="files-B034", tags=["B034"])
def files_b034(session: nox.Session) -> None:
    require(session, "hustlexp/api/proofs.py")


@nox.session(name="files-B035", tags=["B035"])
def files_b035(session: nox.Session) -> None:
    require(session, "hustlexp/api/users.py")


@nox.session(name="files-B036", tags=["B036"])
def files_b036(session: nox.Session) -> None:
    require(session, "hustlexp/api/disputes.py")


@nox.session(name="files-B037", tags=["B037"])
def files_b037(session: nox.Session) -> None:
    require(session, "hustlexp/api/messages.py")


@nox.session(name="files-B038", tags=["B038"])
def files_b038(session: nox.Session) -> None:
    require(session, "hustlexp/api/notifications.py")


@nox.session(name="files-B039", tags=["B039"])
def files_b039(session: nox.Session) -> None:
    require(session, "hustlexp/api/webhooks.py", "tests/api/test_app.py")


@nox.session(name="files-B040", tags=["B040"])
def files_b040(session: nox.Session) -> None:
    require(session, "tests/api/test_tasks.py")


@nox.session(name="files-B041", tags=["B041"])
def files_b041(session: nox.Session) -> None:
    require(session, "tests/api/test_escrows.py")


@nox.session(name="files-B042", tags=["B042"])
def files_b042(session: nox.Session) -> None:
    require(session, *(f"tests/api/test_{resource}.py" for resource in (
        "proofs", "users", "disputes", "messages", "notifications")))


@nox.session(name="files-B043", tags=["B043"])
def files_b043(session: nox.Session) -> None:
    require(session, *(f"hustlexp/api/{module}.py" for module in (
        "base", "auth", "tasks", "escrows", "proofs", "users", "disputes", "messages", "notifications",
        "webhooks")), *(f"tests/api/test_{resource}.py" for resource in (
            "tasks", "escrows", "proofs", "users", "disputes", "messages", "notifications")))


@nox.session(name="files-B050", tags=["B050"])
def files_b050(session: nox.Session) -> None:
    require(session, "tests/e2e/test_happy_path.py")


@nox.session(name="files-B051", tags=["B051"])
def files_b051(session: nox.Session) -> None:
    require(session, "tests/e2e/test_dispute*.py")


@nox.session(name="files-B052", tags=["B052"])
def files_b052(session: nox.Session) -> None:
    require(session, "tests/e2e/test_cancel*.py")


@nox.session(name="files-B053", tags=["B053"])
def files_b053(session: nox.Session) -> None:
    require(session, "tests/e2e/test_expir*.py")


@nox.session(name="files-B054", tags=["B054"])
def files_b054(session: nox.Session) -> None:
    require(session, "tests/e2e/test_stripe*.py")


@nox.session(name="files-B055", tags=["B055"])
def files_b055(session: nox.Session) -> None:
    require(session, "tests/e2e/test_happy_path.py", "tests/e2e/test_dispute*.py", "tests/e2e/test_cancel*.py",
            "tests/e2e/test_expir*.py", "tests/e2e/test_stripe*.py")


@nox.session(name="files-B060", tags=["B060"])
def files_b060(session: nox.Session) -> None:
    require(session, ".github/workflows/ci.yml", "tests/queue_runner/test_ci_workflow.py")


@nox.session(name="files-B061", tags=["B061"])
def files_b061(session: nox.Session) -> None:
    require(session, ".env.example", "hustlexp/config.py", "tests/api/test_app.py")


@nox.session(name="files-B062", tags=["B062"])
def files_b062(session: nox.Session) -> None:
    require(session, "hustlexp/api/health.py", "tests/api/test_health.py")


@nox.session(name="files-B063", tags=["B063"])
def files_b063(session: nox.Session) -> None:
    require(session, "scripts/verify-production.sql", "tests/queue_runner/test_verify_production_sql.py")


@nox.session(name="files-B064", tags=["B064"])
def files_b064(session: nox.Session) -> None:
    require(session, ".github/workflows/ci.yml", ".env.example", "hustlexp/config.py", "hustlexp/api/health.py",
            "scripts/verify-production.sql")


# --- the database, through the operator's own commands ---------------------------------------

@nox.session(tags=["B001", "B002", "B003", "B004", "B005"])
def db(session: nox.Session) -> None:
    """`hustlexp db init` then `hustlexp db verify` on a fresh embedded PostgreSQL."""
    data = Path(tempfile.mkdtemp(prefix="hustlexp-gate-"))
    session.env["HUSTLEXP_PGDATA"] = str(data / "pgdata")
    session.env["DATABASE_URL"] = ""  # empty counts as unset: always the throwaway server
    try:
        session.run(PY, "-m", "hustlexp.cli", "db", "init", **STOP_TIMEOUTS)
        session.run(PY, "-m", "hustlexp.cli", "db", "status", **STOP_TIMEOUTS)
        session.run(PY, "-m", "hustlexp.cli", "db", "verify", **STOP_TIMEOUTS)
    finally:
        shutil.rmtree(data, ignore_errors=True)


# --- test suites ---------------------------------------------------------------------------

@nox.session(tags=["B001", "B002", "B003", "B004", "B005", "B010", "B011", "B025", "B064"])
def schema(session: nox.Session) -> None:
    """The schema loads, the gate checks pass, enums match the CHECK constraints."""
    pytest(session, *SUITES["schema"])


@nox.session(name="schema-pg16", tags=["B002", "B005", "B025", "B064"])
def schema_pg16(session: nox.Session) -> None:
    """The same schema and kill tests on PostgreSQL 16 (the embedded server ships 16 and 18)."""
    session.env["PGSERVER_POSTGRES_VERSION"] = "16"
    pytest(session, *SUITES["schema"], *SUITES["kill"])


@nox.session(tags=["B002", "B005", "B064"])
def migrations(session: nox.Session) -> None:
    """Release 1.0.0, filled by its own services, migrated to head: equal to a fresh install, no row
    lost; then every kill test on a database built from 1.0.0 by the migrations."""
    pytest(session, *SUITES["migrations"])
    session.env["HUSTLEXP_TEST_SCHEMA_FROM"] = "1.0.0"
    pytest(session, *SUITES["kill"])


@nox.session(tags=["B021", "B022", "B023", "B024", "B025", "B064"])
def kill(session: nox.Session) -> None:
    """Kill tests: the database refuses every broken invariant, by SQLSTATE."""
    pytest(session, *SUITES["kill"])


@nox.session(tags=["B010", "B012", "B013", "B014", "B015", "B016", "B017", "B018", "B019", "B020", "B025",
                   "B064"])
def services(session: nox.Session) -> None:
    """Service layer on a real PostgreSQL, Stripe behind its in-process fake."""
    pytest(session, *SUITES["services"])


@nox.session(tags=["B030", "B031", "B032", "B033", "B034", "B035", "B036", "B037", "B038", "B039", "B040",
                   "B041", "B042", "B043", "B054", "B055", "B061", "B062", "B064"])
def api(session: nox.Session) -> None:
    """Every endpoint through the Flask test client: happy path, auth, validation, errors."""
    pytest(session, *SUITES["api"])


@nox.session(tags=["B050", "B051", "B052", "B053", "B054", "B055", "B064"])
def e2e(session: nox.Session) -> None:
    """Whole lifecycles over real HTTP against a served app."""
    pytest(session, *SUITES["e2e"])


@nox.session(tags=["B055", "B064"])
def faults(session: nox.Session) -> None:
    """The served stack under faults: PostgreSQL restarted, Stripe hanging, workers killed."""
    pytest(session, *SUITES["faults"])


@nox.session(name="queue-tests", tags=["B060", "B063", "B064"])
def queue_tests(session: nox.Session) -> None:
    """queue_runner itself, the CI workflow and scripts/verify-production.sql."""
    pytest(session, *SUITES["queue-tests"], *(f"--ignore={path}" for path in SUITES["queue-interrupt"]))


@nox.session(name="queue-interrupt", tags=["B060", "B064"])
def queue_interrupt(session: nox.Session) -> None:
    """Ctrl-C and SIGTERM while a gate's PostgreSQL is up: no server and no folder survive."""
    pytest(session, *SUITES["queue-interrupt"])


# --- not gates -------------------------------------------------------------------------------

@nox.session
def tests(session: nox.Session) -> None:
    """Every test suite in one pytest run (PostgreSQL 18 unless PGSERVER_POSTGRES_VERSION says)."""
    pytest(session)


@nox.session
def queue(session: nox.Session) -> None:
    """The default: lint the queue file, then every gate once, judging the ticked boxes."""
    session.run(PY, "-m", "queue_runner", "check")
    session.run(PY, "-m", "queue_runner", "verify", "--all", "--every-gate", interrupt_timeout=90.0,
                terminate_timeout=30.0)  # it passes Ctrl-C on to its own nox and waits for it


@nox.session
def bench(session: nox.Session) -> None:
    """Throughput against a bare Flask + psycopg transition (prints a table; never a gate).
    `nox -s bench -- --runs 3` for the spread; wrk is used when installed."""
    session.run(PY, "benchmarks/bench_throughput.py", *session.posargs)
