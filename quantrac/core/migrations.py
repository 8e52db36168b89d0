"""The one migration runner and the one version table (``schema_migrations``, keyed by component).

Each component (ingest's readings, alerts, the API, …) owns its migrations; they all go through
``apply_component_migrations`` under one advisory lock, so concurrent starts apply each once.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

import psycopg
from psycopg import sql

log = logging.getLogger(__name__)

MIGRATION_LOCK = 0x71756E74  # "qunt"


ComponentMigration = tuple[int, str, Callable[[psycopg.AsyncConnection], Awaitable[None]]]


async def one_version_table(conn: psycopg.AsyncConnection) -> None:
    """Every component's versions in ``schema_migrations``, keyed by component.

    Databases created before: the core's rows become component ``ingest``, and each
    component's own ``<component>_migrations`` table is folded in and dropped."""
    await conn.execute("""
        CREATE TABLE IF NOT EXISTS schema_migrations (
            component text NOT NULL DEFAULT 'ingest', version integer NOT NULL,
            name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (component, version))""")
    cur = await conn.execute(
        "SELECT 1 FROM information_schema.columns WHERE table_name = 'schema_migrations'"
        " AND column_name = 'component'"
    )
    if await cur.fetchone() is None:
        await conn.execute("""
            ALTER TABLE schema_migrations ADD COLUMN component text NOT NULL DEFAULT 'ingest';
            ALTER TABLE schema_migrations DROP CONSTRAINT schema_migrations_pkey;
            ALTER TABLE schema_migrations ADD PRIMARY KEY (component, version)""")
    cur = await conn.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema()"
        " AND table_name LIKE '%%\\_migrations' AND table_name <> 'schema_migrations'"
    )
    for (table,) in await cur.fetchall():
        await conn.execute(
            sql.SQL(
                "INSERT INTO schema_migrations (component, version, name, applied_at)"
                " SELECT {}, version, name, applied_at FROM {} ON CONFLICT DO NOTHING"
            ).format(sql.Literal(component_name(table)), sql.Identifier(table))
        )
        await conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(table)))


def component_name(table: str) -> str:
    """``alerts_migrations`` (the name a component gives its migrations) → ``alerts``."""
    return table.removesuffix("_migrations")


async def apply_component_migrations(
    conn: psycopg.AsyncConnection, table: str, lock: int, migrations: Sequence[ComponentMigration]
) -> list[int]:
    """Versioned migrations of a component built on the readings schema (alerts, the API, …).

    The one runner: every component's versions go to ``schema_migrations`` under its own
    name (``table`` minus ``_migrations``), applied under the one migration lock (``lock`` is
    kept for the callers' sake). Returns the versions applied now."""
    component = component_name(table)
    applied: list[int] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", [MIGRATION_LOCK])
        await one_version_table(conn)
        cur = await conn.execute(
            "SELECT version FROM schema_migrations WHERE component = %s", [component]
        )
        done = {row[0] for row in await cur.fetchall()}
        for version, name, migrate in migrations:
            if version in done:
                continue
            log.info(
                "applying migration",
                extra={"event": "migration", "component": component, "version": version},
            )
            await migrate(conn)
            await conn.execute(
                "INSERT INTO schema_migrations (component, version, name) VALUES (%s, %s, %s)",
                [component, version, name],
            )
            applied.append(version)
    return applied


async def pending_migrations(
    conn: psycopg.AsyncConnection, components: dict[str, Sequence[tuple[int, str, object]]]
) -> dict[str, list[int]]:
    """Per component, the versions not applied yet; reads only (for read-only commands)."""
    cur = await conn.execute(
        "SELECT to_regclass('schema_migrations') IS NOT NULL AND EXISTS (SELECT 1 FROM"
        " information_schema.columns WHERE table_name = 'schema_migrations'"
        " AND column_name = 'component')"
    )
    row = await cur.fetchone()
    done: set[tuple[str, int]] = set()
    if row and row[0]:
        cur = await conn.execute("SELECT component, version FROM schema_migrations")
        done = {(c, v) for c, v in await cur.fetchall()}
    missing = {
        name: [v for v, _, _ in migrations if (name, v) not in done]
        for name, migrations in components.items()
    }
    return {name: versions for name, versions in missing.items() if versions}
