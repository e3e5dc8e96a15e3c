"""What a schema is, read from PostgreSQL's catalog: two databases with equal snapshots have the
same tables, columns (in the same order), constraints, indexes, triggers, functions and types."""

from __future__ import annotations

from typing import Any

import psycopg

QUERIES = {
    "relations": """
        SELECT c.relname, c.relkind::text, c.relpersistence::text
          FROM pg_class c WHERE c.relnamespace = 'public'::regnamespace
           AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f', 'c')""",
    "columns": """
        SELECT table_name, row_number() OVER (PARTITION BY table_name ORDER BY ordinal_position) AS position,
               column_name, data_type, udt_name, character_maximum_length, numeric_precision, numeric_scale,
               datetime_precision, is_nullable, column_default, is_identity, is_generated, generation_expression
          FROM information_schema.columns WHERE table_schema = 'public'""",
    "constraints": """
        SELECT conrelid::regclass::text, conname, contype::text, pg_get_constraintdef(oid), condeferrable,
               condeferred, convalidated
          FROM pg_constraint WHERE connamespace = 'public'::regnamespace""",
    "indexes": "SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = 'public'",
    "triggers": """
        SELECT tgrelid::regclass::text, tgname, pg_get_triggerdef(oid), tgenabled::text
          FROM pg_trigger WHERE NOT tgisinternal""",
    "functions": """
        SELECT proname, pg_get_function_identity_arguments(oid), pg_get_functiondef(oid)
          FROM pg_proc WHERE pronamespace = 'public'::regnamespace AND prokind IN ('f', 'p')""",
    "types": """
        SELECT t.typname, t.typtype::text, format_type(t.typbasetype, t.typtypmod),
               array_to_string(ARRAY(SELECT enumlabel::text FROM pg_enum e WHERE e.enumtypid = t.oid
                                     ORDER BY e.enumsortorder), ',')
          FROM pg_type t WHERE t.typnamespace = 'public'::regnamespace AND t.typtype IN ('e', 'd')""",
    "extensions": "SELECT extname FROM pg_extension",
    "comments": """
        SELECT c.relname, d.objsubid, d.description FROM pg_description d
          JOIN pg_class c ON c.oid = d.objoid AND d.classoid = 'pg_class'::regclass
         WHERE c.relnamespace = 'public'::regnamespace""",
}


def snapshot(conn: psycopg.Connection[Any]) -> dict[str, list[tuple[Any, ...]]]:
    out: dict[str, list[tuple[Any, ...]]] = {}
    with conn.cursor(row_factory=psycopg.rows.tuple_row) as cur:
        for name, query in QUERIES.items():
            out[name] = sorted(cur.execute(query).fetchall(), key=repr)
    return out


def differences(left: dict[str, list[tuple[Any, ...]]], right: dict[str, list[tuple[Any, ...]]]) -> dict[str, Any]:
    """Per kind of object, what only one side has (empty when the schemas are the same)."""
    diff: dict[str, Any] = {}
    for kind in QUERIES:
        a, b = set(left[kind]), set(right[kind])
        if a != b:
            diff[kind] = {"only_left": sorted(a - b, key=repr), "only_right": sorted(b - a, key=repr)}
    return diff


def table_digests(conn: psycopg.Connection[Any], columns: dict[str, list[str]]) -> dict[str, tuple[int, str]]:
    """Per table: row count and an order-free digest of its rows over the given columns."""
    digests: dict[str, tuple[int, str]] = {}
    for table, cols in columns.items():
        select = ", ".join(f'"{c}"' for c in cols)
        row = conn.execute(  # names come from the catalog, not from input
            f'SELECT count(*), coalesce(md5(string_agg(h, \'\' ORDER BY h)), \'\') FROM '
            f'(SELECT md5(ROW({select})::text) AS h FROM "{table}") AS rows').fetchone()
        digests[table] = (_get(row, 0), _get(row, 1))
    return digests


def table_columns(conn: psycopg.Connection[Any]) -> dict[str, list[str]]:
    rows = conn.execute("""
        SELECT table_name, array_agg(column_name::text ORDER BY ordinal_position)
          FROM information_schema.columns c JOIN information_schema.tables USING (table_schema, table_name)
         WHERE table_schema = 'public' AND table_type = 'BASE TABLE' GROUP BY table_name""").fetchall()
    return {_get(r, 0): list(_get(r, 1)) for r in rows}


def _get(row: Any, i: int) -> Any:
    return list(row.values())[i] if isinstance(row, dict) else row[i]
