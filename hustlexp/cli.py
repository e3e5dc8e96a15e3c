"""`hustlexp` command line: serve the API, manage the schema, run background jobs."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from typing import Any

import psycopg
from rich.console import Console
from rich.table import Table

from hustlexp import config
from hustlexp.db import embedded, migrations
from hustlexp.db import schema as schema_mod

err_console = Console(stderr=True)


class CliError(Exception):
    """One clear line for the user, exit code 2."""


def _connect(settings: config.Settings) -> psycopg.Connection[Any]:
    url, _server = embedded.resolve_url(settings.database_url)
    try:
        return psycopg.connect(url, autocommit=True, connect_timeout=5)
    except psycopg.ProgrammingError as exc:
        raise CliError(f"DATABASE_URL is not a valid connection string: {exc}") from None
    except psycopg.OperationalError as exc:
        text = str(exc).strip() or type(exc).__name__
        reason = text.splitlines()[0].removeprefix("connection failed: ")
        raise CliError(f"cannot connect to the database {_describe(url)}: {reason}") from None


def _describe(url: str) -> str:
    try:
        params = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "(DATABASE_URL is not a valid connection string)"
    host = params.get("host") or "localhost"
    port = params.get("port") or "5432"
    return f"{params.get('dbname', '')!s} at {host}:{port}"


def cmd_db_init(args: argparse.Namespace, settings: config.Settings) -> int:
    """Install the current schema on an empty database (a current one is left alone)."""
    with _connect(settings) as conn:
        outcome = _schema_change(conn, allow=("install",))
    err_console.print(f"[green]{outcome.describe()}[/green]")
    return 0


def cmd_db_migrate(args: argparse.Namespace, settings: config.Settings) -> int:
    """Apply every pending migration (or install the schema on an empty database)."""
    with _connect(settings) as conn:
        if args.dry_run:
            try:
                outcome = migrations.plan(conn)
            except migrations.SchemaError as exc:
                raise CliError(str(exc)) from None
            _print_plan(outcome, args.json)
            return 0
        outcome = _schema_change(conn, allow=("install", "migrate"))
    if args.json:
        print(json.dumps(_outcome_dict(outcome, dry_run=False), indent=2))
    err_console.print(f"[green]{outcome.describe()}[/green]")
    return 0


def cmd_db_status(args: argparse.Namespace, settings: config.Settings) -> int:
    """Current version, pending steps; exit 0 current, 1 something to apply, 2 refused."""
    with _connect(settings) as conn:
        try:
            st = migrations.status(conn)
        except migrations.SchemaError as exc:
            raise CliError(str(exc)) from None
    if args.json:
        print(json.dumps(st.as_dict(), indent=2))
    else:
        out = Console()
        out.print(f"schema: {st.current or 'none installed'} (this build: {st.head}) - {st.state}", highlight=False)
        for step in st.pending:
            out.print(f"  pending {step.version}  {step.file}", highlight=False)
        refusal = st.refusal()
        if refusal:
            err_console.print(f"[red]error:[/red] {refusal}", highlight=False, soft_wrap=True)
        elif st.state == "empty":
            err_console.print("run `hustlexp db init` (or `hustlexp db migrate`) to install it", highlight=False)
        elif st.pending:
            err_console.print("run `hustlexp db migrate` to apply them", highlight=False)
    return {"current": 0, "behind": 1, "empty": 1}.get(st.state, 2)


def _schema_change(conn: psycopg.Connection[Any], allow: tuple[str, ...]) -> migrations.Outcome:
    try:
        return migrations.migrate(conn, allow=allow)
    except migrations.SchemaError as exc:
        raise CliError(str(exc)) from None


def _outcome_dict(outcome: migrations.Outcome, *, dry_run: bool) -> dict[str, Any]:
    return {"dry_run": dry_run, "action": outcome.action, "from": outcome.before, "to": outcome.after,
            "steps": [{"version": s.version, "file": s.file} for s in outcome.steps]}


def _print_plan(outcome: migrations.Outcome, as_json: bool) -> None:
    if as_json:
        print(json.dumps(_outcome_dict(outcome, dry_run=True), indent=2))
        return
    out = Console()
    if outcome.action == "install":
        out.print(f"would install sql/schema.sql and record {len(outcome.steps)} versions up to {outcome.after}",
                  highlight=False)
    elif outcome.action == "migrate":
        out.print(f"would migrate {outcome.before} -> {outcome.after}:", highlight=False)
        for step in outcome.steps:
            out.print(f"  {step.version}  {step.file}", highlight=False)
    else:
        out.print(f"schema {outcome.after} is current; nothing would run", highlight=False)


def cmd_db_verify(args: argparse.Namespace, settings: config.Settings) -> int:
    with _connect(settings) as conn:
        checks = schema_mod.verify(conn)
    passed = all(c.ok for c in checks)
    if args.json:
        print(json.dumps({"ok": passed, "schema_version": migrations.head(),
                          "checks": schema_mod.checks_as_dicts(checks)}, indent=2))
    else:
        table = Table(title="HustleXP schema gate (B001-B005)")
        table.add_column("check")
        table.add_column("result")
        table.add_column("detail")
        for c in checks:
            table.add_row(c.name, "[green]pass[/green]" if c.ok else "[red]FAIL[/red]", c.detail)
        Console().print(table)
        summary = f"{sum(c.ok for c in checks)}/{len(checks)} checks passed"
        err_console.print(f"[green]{summary}[/green]" if passed else f"[red]{summary}[/red]")
    return 0 if passed else 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hustlexp", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)

    db = sub.add_parser("db", help="schema management").add_subparsers(dest="db_command", required=True)
    init = db.add_parser("init", help="install the current schema (sql/schema.sql) on an empty database")
    init.set_defaults(func=cmd_db_init)
    migrate = db.add_parser("migrate", help="apply pending migrations (installs on an empty database)")
    migrate.add_argument("--dry-run", action="store_true", help="list what would run; change nothing")
    migrate.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    migrate.set_defaults(func=cmd_db_migrate)
    status = db.add_parser("status", help="installed version and pending migrations "
                                          "(exit 0 current, 1 pending, 2 refused)")
    status.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    status.set_defaults(func=cmd_db_status)
    verify = db.add_parser("verify", help="run every schema gate check (B001-B005)")
    verify.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    verify.set_defaults(func=cmd_db_verify)

    _add_optional_commands(sub)
    return parser


def _add_optional_commands(sub: Any) -> None:
    """Commands whose modules pull in the web stack or the job queue, registered lazily."""
    from hustlexp import commands, devtools

    commands.register(sub)
    devtools.register(sub)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = config.load()
        from hustlexp.obs import logs

        logs.configure(settings.log_format, logging.INFO if args.verbose else logging.WARNING)
        return int(args.func(args, settings) or 0)
    except (CliError, config.ConfigError) as exc:
        err_console.print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
