"""`hustlexp admin grant EMAIL ROLE | revoke EMAIL | list`: admin rights for operators, and
the only way to make the first admin (nobody can grant it through the API yet)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from rich.console import Console
from rich.table import Table

from hustlexp import config
from hustlexp.errors import DomainError
from hustlexp.services.admin_roles import FLAGS, ROLE_FLAGS


def register(sub: Any) -> None:
    admin = sub.add_parser("admin", help="grant, revoke and list admin rights").add_subparsers(
        dest="admin_command", required=True)
    grant = admin.add_parser("grant", help="make a registered user an admin (or change their role)")
    grant.add_argument("email")
    grant.add_argument("role", choices=list(ROLE_FLAGS))
    grant.add_argument("--by", metavar="EMAIL", help="the admin or founder acting (not needed for the first admin)")
    grant.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    grant.set_defaults(func=cmd_grant)
    revoke = admin.add_parser("revoke", help="take a user's admin rights away")
    revoke.add_argument("email")
    revoke.add_argument("--by", metavar="EMAIL", required=True, help="the admin or founder acting")
    revoke.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    revoke.set_defaults(func=cmd_revoke)
    listing = admin.add_parser("list", help="every admin, their role and rights")
    listing.add_argument("--json", action="store_true", help="print one JSON document on stdout")
    listing.set_defaults(func=cmd_list)


def _run(settings: config.Settings, call: Any) -> Any:
    from hustlexp.app import init_db
    from hustlexp.cli import CliError
    from hustlexp.services import Services

    db, _server = init_db(settings)
    try:
        db.pool.wait(timeout=settings.db_pool_timeout)
        return call(Services(db)).unwrap()
    except DomainError as exc:
        raise CliError(exc.message) from None
    finally:
        db.close()


def _print(doc: Any, as_json: bool, line: str) -> None:
    if as_json:
        print(json.dumps(doc, default=str, indent=2))
    else:
        Console().print(line, highlight=False)


def cmd_grant(args: argparse.Namespace, settings: config.Settings) -> int:
    row = _run(settings, lambda s: s.admin_roles.grant(args.email, args.role, by_email=args.by))
    rights = ", ".join(f for f in FLAGS if row[f]) or "read only"
    _print({k: row[k] for k in ("user_id", "email", "role", *FLAGS, "action_id")}, args.json,
           f"{row['email']} is now {row['role']} ({rights})")
    return 0


def cmd_revoke(args: argparse.Namespace, settings: config.Settings) -> int:
    out = _run(settings, lambda s: s.admin_roles.revoke(args.email, by_email=args.by))
    _print(out, args.json, f"{out['email']} is no longer an admin (was {out['role']})")
    return 0


def cmd_list(args: argparse.Namespace, settings: config.Settings) -> int:
    rows = _run(settings, lambda s: s.admin_roles.list())
    if args.json:
        print(json.dumps(rows, default=str, indent=2))
        return 0
    table = Table(title="admins")
    for col in ("email", "role", "rights", "granted", "by"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["email"], r["role"], ", ".join(f.removeprefix("can_") for f in FLAGS if r[f]) or "-",
                      r["granted_at"].isoformat(timespec="seconds"), r["granted_by_email"] or "-")
    Console().print(table)
    return 0
