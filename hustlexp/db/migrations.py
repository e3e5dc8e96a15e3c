"""Schema versions: install the current schema on an empty database, or bring an older one
forward one migration at a time (DESIGN.md §7.11, §7.15).

- sql/schema.sql is the whole current schema, for a fresh install.
- sql/versions/1.0.0.sql is the first release exactly as it shipped.
- sql/migrations/NNNN_slug.sql moves a database one version on, to 1.N.0 (0001 -> 1.1.0).

Every version a database holds is a schema_versions row carrying the sha256 of the file that
made it, so a release file edited after the fact is caught. Each migration runs in one
transaction together with its row, under a PostgreSQL advisory lock: two hosts starting at
once never both migrate, and a host that dies mid-way leaves no lock behind (the lock ends
with its session). Statements run one at a time so a failure names its file and line.

Why not a migration library: yoyo-migrations (the closest fit, raw SQL files) locks with a row
in its own table, which a crashed host leaves behind until someone runs `yoyo break-lock`;
keeps its history in four tables of its own beside schema_versions, which is our record and the
one the production checks read; and splits files with sqlparse, a second parser for our
dollar-quoted trigger bodies. The rules fit in this module."""

from __future__ import annotations

import getpass
import hashlib
import logging
import re
import socket
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import psycopg

from hustlexp import __version__

log = logging.getLogger("hustlexp.db.migrations")

BASELINE = "1.0.0"
# One fixed key for every HustleXP deployment: "HX" "MIGR" as bytes.
LOCK_KEY = 0x48584D494752
MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")

NEWEST_VERSION_SQL = ("SELECT version FROM schema_versions "
                      "ORDER BY string_to_array(version, '.')::int[] DESC LIMIT 1")
PUBLIC_TABLES_SQL = """
    SELECT count(*) AS n FROM information_schema.tables
     WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"""


class SchemaError(Exception):
    """The database cannot be brought to this build's schema as it stands; the message says why
    and what to run."""


class MigrationError(SchemaError):
    """A statement failed; its migration was rolled back whole."""


def sql_dir() -> Path:
    """sql/ of the checkout (the files are the source of truth, not copies)."""
    here = Path(__file__).resolve().parents[2] / "sql"
    if here.is_dir():
        return here
    return Path(str(resources.files("hustlexp"))).parent / "sql"


def schema_path() -> Path:
    return sql_dir() / "schema.sql"


def version_key(version: str) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in version.split("."))
    except ValueError:
        raise SchemaError(f"schema_versions holds {version!r}, which is not a version number") from None


@dataclass(frozen=True)
class Step:
    """One schema version and the file that makes it."""

    version: str
    path: Path

    @property
    def file(self) -> str:
        return f"{self.path.parent.name}/{self.path.name}"

    def checksum(self) -> str:
        return hashlib.sha256(self.path.read_bytes()).hexdigest()


def steps(root: Path | None = None) -> tuple[Step, ...]:
    """Every version this build knows, oldest first: the baseline, then each migration."""
    root = root or sql_dir()
    found: list[Step] = [Step(BASELINE, root / "versions" / f"{BASELINE}.sql")]
    folder = root / "migrations"
    files = sorted(p for p in folder.iterdir() if p.suffix == ".sql") if folder.is_dir() else []
    for number, path in enumerate(files, start=1):
        match = MIGRATION_NAME.match(path.name)
        if not match:
            raise SchemaError(f"{path.name}: a migration is named NNNN_lowercase_words.sql")
        if int(match.group(1)) != number:
            raise SchemaError(f"{path.name}: expected migration number {number:04d} (numbers run 0001, "
                              "0002, ... with no gap or repeat)")
        found.append(Step(f"1.{number}.0", path))
    return tuple(found)


def head(known: Sequence[Step] | None = None) -> str:
    return (known or steps())[-1].version


@dataclass
class Status:
    """What a database holds against what this build knows."""

    head: str
    current: str | None = None
    applied: list[dict[str, Any]] = field(default_factory=list)
    pending: list[Step] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    ahead: bool = False
    foreign_tables: int = 0

    @property
    def state(self) -> str:
        """empty | current | behind | ahead | inconsistent"""
        if self.ahead:
            return "ahead"
        if self.problems:
            return "inconsistent"
        if self.current is None:
            return "empty"
        return "behind" if self.pending else "current"

    def refusal(self) -> str | None:
        """Why this database cannot be served or migrated by this build, or None."""
        if self.ahead:
            return (f"database schema is {self.current}, newer than this build's {self.head}: run the "
                    "newer HustleXP (a schema is never migrated down)")
        if self.problems:
            return "; ".join(self.problems)
        return None

    def as_dict(self) -> dict[str, Any]:
        return {"state": self.state, "current": self.current, "head": self.head,
                "pending": [{"version": s.version, "file": s.file} for s in self.pending],
                "applied": [{**row, "applied_at": row["applied_at"].isoformat()} for row in self.applied],
                "problems": self.problems if not self.ahead else [self.refusal()]}


def status(conn: psycopg.Connection[Any], known: Sequence[Step] | None = None) -> Status:
    known = tuple(known or steps())
    result = Status(head=known[-1].version)
    if not _scalar(conn, "SELECT to_regclass('public.schema_versions') IS NOT NULL"):
        result.foreign_tables = _scalar(conn, PUBLIC_TABLES_SQL)
        if result.foreign_tables:
            result.problems.append(f"database is not empty ({result.foreign_tables} tables in public) and has no "
                                   "schema_versions; refusing to install the schema over it")
        return result
    rows = conn.execute("SELECT version, checksum, applied_at, applied_by FROM schema_versions").fetchall()
    result.applied = sorted((_as_dict(row) for row in rows), key=lambda r: version_key(r["version"]))
    if not result.applied:
        result.problems.append("schema_versions is empty; the database was not installed by HustleXP")
        return result
    by_version = {s.version: s for s in known}
    result.current = result.applied[-1]["version"]
    if version_key(result.current) > version_key(result.head):
        result.ahead = True
        return result
    recorded = set()
    for row in result.applied:
        recorded.add(row["version"])
        step = by_version.get(row["version"])
        if step is None:
            result.problems.append(f"schema_versions holds {row['version']}, which this build does not know")
        elif row["checksum"] != step.checksum():
            result.problems.append(f"schema {row['version']} was installed from a different {step.file} "
                                   "(checksum differs)")
    current_key = version_key(result.current)
    for step in known:
        if version_key(step.version) > current_key:
            result.pending.append(step)
        elif step.version not in recorded:
            result.problems.append(f"schema {step.version} ({step.file}) is missing from schema_versions "
                                   f"although {result.current} is recorded")
    return result


def installed_version(conn: psycopg.Connection[Any]) -> str | None:
    """The newest schema version in this database, or None for an empty one."""
    if not _scalar(conn, "SELECT to_regclass('public.schema_versions') IS NOT NULL"):
        return None
    row = conn.execute(NEWEST_VERSION_SQL).fetchone()
    return first_value(row) if row else None


@dataclass
class Outcome:
    """What install/migrate did (or, for a dry run, would do)."""

    action: str  # "install" | "migrate" | "none"
    steps: list[Step]
    before: str | None
    after: str

    def describe(self) -> str:
        if self.action == "install":
            return f"installed schema {self.after} (sql/schema.sql; {len(self.steps)} versions recorded)"
        if self.action == "migrate":
            return f"migrated schema {self.before} -> {self.after} ({len(self.steps)} migrations)"
        return f"schema {self.after} is current; nothing to do"


def plan(conn: psycopg.Connection[Any], known: Sequence[Step] | None = None) -> Outcome:
    """What `migrate` would do now. Raises SchemaError where it would refuse."""
    known = tuple(known or steps())
    st = status(conn, known)
    refusal = st.refusal()
    if refusal:
        raise SchemaError(refusal)
    if st.state == "empty":
        return Outcome("install", list(known), None, st.head)
    if st.pending:
        return Outcome("migrate", st.pending, st.current, st.head)
    return Outcome("none", [], st.current, st.head)


def migrate(conn: psycopg.Connection[Any], *, known: Sequence[Step] | None = None,
            schema: Path | None = None, allow: tuple[str, ...] = ("install", "migrate")) -> Outcome:
    """Bring the database to this build's head: install on an empty one, else apply each pending
    migration in its own transaction. `allow` says which of the two the caller permits; a plan
    needing another is refused with the command that does it."""
    _require_autocommit(conn)
    known = tuple(known or steps())
    with _locked(conn):
        outcome = plan(conn, known)  # read again under the lock: another host may have done it
        if outcome.action == "migrate" and "migrate" not in allow:
            raise SchemaError(f"database schema is {outcome.before}, this build needs {outcome.after}: "
                              "run `hustlexp db migrate`")
        if outcome.action == "install" and "install" not in allow:
            raise SchemaError("database is empty: run `hustlexp db init`")
        who = applied_by()
        if outcome.action == "install":
            schema = schema or schema_path()
            with conn.transaction():
                _execute_file(conn, schema, "sql/schema.sql")
                for step in known:
                    _record(conn, step, who, "installed from sql/schema.sql")
        for step in outcome.steps if outcome.action == "migrate" else ():
            with conn.transaction():
                _execute_file(conn, step.path, step.file)
                _record(conn, step, who, f"migrated by {step.file}")
            log.warning("schema %s applied (%s)", step.version, step.file)
    return outcome


def applied_by() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()} (hustlexp {__version__})"[:100]


def _record(conn: psycopg.Connection[Any], step: Step, who: str, notes: str) -> None:
    conn.execute("INSERT INTO schema_versions (version, applied_by, checksum, notes) VALUES (%s, %s, %s, %s)",
                 (step.version, who, step.checksum(), notes))


TRANSACTION_CONTROL = re.compile(r"^(BEGIN|COMMIT|ROLLBACK|START|END|ABORT|SAVEPOINT|RELEASE|PREPARE\s+TRANSACTION)\b",
                                 re.IGNORECASE)


def _execute_file(conn: psycopg.Connection[Any], path: Path, label: str) -> None:
    for line, statement in statements(path.read_text(encoding="utf-8")):
        if TRANSACTION_CONTROL.match(statement):
            raise MigrationError(f"{label} line {line}: `{_summary(statement)}`: a migration may not manage its "
                                 "own transaction (the runner wraps each file in one)")
        try:
            conn.execute(statement.encode())
        except psycopg.Error as exc:
            reason = (str(exc).strip() or type(exc).__name__).splitlines()[0]
            state = f" [SQLSTATE {exc.sqlstate}]" if exc.sqlstate else ""
            raise MigrationError(f"{label} line {line}: `{_summary(statement)}` failed{state}: {reason}; "
                                 "rolled back, nothing applied") from exc


def _summary(statement: str, width: int = 80) -> str:
    flat = " ".join(statement.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


@contextmanager
def _locked(conn: psycopg.Connection[Any]) -> Iterator[None]:
    """Hold the migration lock for this session; a second host waits here, then finds the work done."""
    if not _scalar(conn, "SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,)):
        log.warning("another host is installing or migrating the schema; waiting for it")
        conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
    try:
        yield
    finally:
        if not conn.closed:
            conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))


def _require_autocommit(conn: psycopg.Connection[Any]) -> None:
    if not conn.autocommit:
        raise ValueError("migrations need an autocommit connection: each runs in a transaction of its own")


# --- splitting a file into statements -------------------------------------------------------

DOLLAR_TAG = re.compile(r"\$(?:[A-Za-z_][A-Za-z0-9_]*)?\$")


def statements(text: str) -> list[tuple[int, str]]:
    """Split SQL at top-level semicolons: (line number, statement) pairs. Semicolons inside
    quotes, quoted identifiers, dollar-quoted bodies and comments do not split."""
    out: list[tuple[int, str]] = []
    start = i = 0
    n = len(text)
    while i < n:
        c = text[i]
        if text.startswith("--", i):
            end = text.find("\n", i)
            i = n if end < 0 else end + 1
        elif text.startswith("/*", i):
            i = _block_comment_end(text, i)
        elif c == "'":
            i = _quoted_end(text, i, "'", backslash=_is_escape_string(text, i))
        elif c == '"':
            i = _quoted_end(text, i, '"', backslash=False)
        elif c == "$" and (m := DOLLAR_TAG.match(text, i)) and not _word_char(text, i - 1):
            end = text.find(m.group(), m.end())
            i = n if end < 0 else end + len(m.group())
        elif c == ";":
            _add(out, text, start, i)
            start = i = i + 1
        else:
            i += 1
    _add(out, text, start, n)
    return out


def _add(out: list[tuple[int, str]], text: str, start: int, end: int) -> None:
    i = start
    while i < end:  # skip leading blanks and comments to find where the statement begins
        if text[i].isspace():
            i += 1
        elif text.startswith("--", i):
            nl = text.find("\n", i)
            i = end if nl < 0 else nl + 1
        elif text.startswith("/*", i):
            i = _block_comment_end(text, i)
        else:
            break
    if i < end:
        out.append((text.count("\n", 0, i) + 1, text[i:end].strip()))


def _block_comment_end(text: str, i: int) -> int:
    depth = 0  # PostgreSQL block comments nest
    while i < len(text):
        if text.startswith("/*", i):
            depth, i = depth + 1, i + 2
        elif text.startswith("*/", i):
            depth, i = depth - 1, i + 2
            if depth == 0:
                return i
        else:
            i += 1
    return i


def _quoted_end(text: str, i: int, quote: str, *, backslash: bool) -> int:
    i += 1
    while i < len(text):
        if backslash and text[i] == "\\":
            i += 2
        elif text[i] == quote:
            if text.startswith(quote * 2, i):  # a doubled quote is the quote itself
                i += 2
            else:
                return i + 1
        else:
            i += 1
    return i


def _is_escape_string(text: str, i: int) -> bool:
    return i > 0 and text[i - 1] in "eE" and not _word_char(text, i - 2)


def _word_char(text: str, i: int) -> bool:
    return i >= 0 and (text[i].isalnum() or text[i] == "_")


def _scalar(conn: psycopg.Connection[Any], query: str, params: tuple[Any, ...] | None = None) -> Any:
    return first_value(conn.execute(query.encode(), params).fetchone())


def first_value(row: Any) -> Any:
    if row is None:
        return None
    if isinstance(row, dict):
        return next(iter(row.values()))
    return row[0]


def _as_dict(row: Any) -> dict[str, Any]:
    if isinstance(row, dict):
        return dict(row)
    return dict(zip(("version", "checksum", "applied_at", "applied_by"), row, strict=True))
