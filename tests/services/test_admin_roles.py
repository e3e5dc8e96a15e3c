"""Admin rights from the command line: `hustlexp admin grant | revoke | list`. The first
admin bootstraps themselves; after that an acting admin or founder is named; each change is
one admin_actions row."""

from __future__ import annotations

import json

import pytest

from hustlexp import cli
from tests.services import flows


def _email(services, user_id):
    return flows.row(services, "SELECT email FROM users WHERE id = %s", user_id)["email"]


def _actions(services, kind):
    with services.db.transaction() as conn:
        return conn.execute("SELECT * FROM admin_actions WHERE action_type = %s ORDER BY performed_at",
                            (kind,)).fetchall()


def _hx(monkeypatch, capsys, db_url, *argv):
    monkeypatch.setenv("DATABASE_URL", db_url)
    code = cli.main(["admin", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_first_grant_bootstraps_then_needs_an_acting_admin(svc):
    first, second = _email(svc, flows.user(svc)), _email(svc, flows.user(svc))
    row = svc.admin_roles.grant(first, "founder").unwrap()
    assert row["role"] == "founder" and row["can_access_financials"] and row["can_ban_users"]
    [action] = _actions(svc, "ADMIN_ROLE_GRANT")
    assert action["admin_user_id"] == row["user_id"] and action["action_details"]["bootstrap"] is True
    refused = svc.admin_roles.grant(second, "support")
    assert refused.error.code == "VALIDATION_ERROR" and "by" in refused.error.details
    support = svc.admin_roles.grant(second, "support", by_email=first).unwrap()
    assert not any(support[f] for f in ("can_resolve_disputes", "can_ban_users", "can_modify_trust"))
    assert _actions(svc, "ADMIN_ROLE_GRANT")[-1]["admin_user_id"] == row["user_id"]


def test_only_admins_and_founders_manage_admins(svc):
    boss, mod, other = (_email(svc, flows.user(svc)) for _ in range(3))
    svc.admin_roles.grant(boss, "admin").unwrap()
    svc.admin_roles.grant(mod, "moderator", by_email=boss).unwrap()
    assert svc.admin_roles.grant(other, "support", by_email=mod).error.code == "FORBIDDEN"
    assert svc.admin_roles.grant(other, "support", by_email="nobody@example.test").error.code == "HX504"
    assert svc.admin_roles.grant("nobody@example.test", "support", by_email=boss).error.code == "HX504"
    assert svc.admin_roles.grant(other, "emperor", by_email=boss).error.code == "VALIDATION_ERROR"
    assert len(_actions(svc, "ADMIN_ROLE_GRANT")) == 2


def test_regrant_changes_the_role_and_revoke_removes_it(svc):
    boss, mod = (_email(svc, flows.user(svc)) for _ in range(2))
    svc.admin_roles.grant(boss, "founder").unwrap()
    svc.admin_roles.grant(mod, "moderator", by_email=boss).unwrap()
    promoted = svc.admin_roles.grant(mod, "admin", by_email=boss).unwrap()
    assert promoted["role"] == "admin" and promoted["can_modify_trust"]
    assert _actions(svc, "ADMIN_ROLE_GRANT")[-1]["action_details"]["previous_role"] == "moderator"
    out = svc.admin_roles.revoke(mod, by_email=boss).unwrap()
    assert out["role"] == "admin"
    assert [r["email"] for r in svc.admin_roles.list().unwrap()] == [boss]
    assert svc.admin_roles.revoke(mod, by_email=boss).error.code == "CONFLICT"
    [revoked] = _actions(svc, "ADMIN_ROLE_REVOKE")
    assert revoked["target_user_id"] == out["user_id"]


def test_cli_grant_list_revoke(svc, db_url, monkeypatch, capsys):
    boss, helper = _email(svc, flows.user(svc)), _email(svc, flows.user(svc))
    code, out, _ = _hx(monkeypatch, capsys, db_url, "grant", boss, "founder", "--json")
    assert code == 0 and json.loads(out)["role"] == "founder"
    code, _, err = _hx(monkeypatch, capsys, db_url, "grant", helper, "support")
    assert code == 2 and "--by" in err
    assert _hx(monkeypatch, capsys, db_url, "grant", helper, "moderator", "--by", boss)[0] == 0
    code, out, _ = _hx(monkeypatch, capsys, db_url, "list", "--json")
    assert code == 0 and {(r["email"], r["role"]) for r in json.loads(out)} == {(boss, "founder"),
                                                                               (helper, "moderator")}
    code, out, _ = _hx(monkeypatch, capsys, db_url, "revoke", helper, "--by", boss)
    assert code == 0 and "no longer an admin" in out
    code, _, err = _hx(monkeypatch, capsys, db_url, "revoke", helper, "--by", boss)
    assert code == 2 and "not an admin" in err
    assert len(_actions(svc, "ADMIN_ROLE_REVOKE")) == 1


def test_cli_refuses_an_unknown_role(db_url, monkeypatch, capsys):
    with pytest.raises(SystemExit) as exit_:
        _hx(monkeypatch, capsys, db_url, "grant", "a@example.test", "emperor")
    assert exit_.value.code == 2
