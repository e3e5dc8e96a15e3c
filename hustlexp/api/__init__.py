"""The REST API: project defaults in base.py, identity in auth.py, one module per resource.

Each router module exposes a flask-smorest ``blp``; ROUTERS lists them in registration
order. Add a new router by adding its module name here."""

from __future__ import annotations

import importlib

from flask_smorest import Api

ROUTERS = ("health", "webhooks", "users", "devices", "notifications", "messages", "tasks", "escrows", "proofs",
           "disputes", "ratings", "feed", "inbox", "progress", "uploads", "objects", "admin", "payouts")


def register_routers(api: Api) -> None:
    for name in ROUTERS:
        module = importlib.import_module(f"hustlexp.api.{name}")
        api.register_blueprint(module.blp)
