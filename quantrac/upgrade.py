"""Every component's migrations, for `quantrac db upgrade` and for the commands that must not
change the schema.

One runner (``quantrac.core.migrations.apply_component_migrations``) and one version table
(``schema_migrations``, keyed by component). Services apply their own components at start;
`quantrac db upgrade` applies all of them; read-only commands (reports, export) only check that
nothing is pending and otherwise ask for `quantrac db upgrade`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import psycopg

from quantrac.alerts import station_log
from quantrac.alerts import store as alert_store
from quantrac.api import schema as api_schema
from quantrac.core.db import connect
from quantrac.core.migrations import pending_migrations
from quantrac.core.settings import Settings
from quantrac.evidence import schema as evidence_schema
from quantrac.forward import service as forward
from quantrac.ingest import schema
from quantrac.ingest.service import upgrade_database
from quantrac.reports import delivery

Upgrade = Callable[[psycopg.AsyncConnection], Awaitable[list[int]]]

# Component name (as in schema_migrations), its migrations, and how to apply them; in order:
# each builds on the ones before it.
COMPONENTS: list[tuple[str, Sequence[tuple[int, str, object]], Upgrade]] = [
    ("alerts", alert_store.MIGRATIONS, alert_store.upgrade),
    ("station_log", station_log.MIGRATIONS, station_log.upgrade),
    ("api", api_schema.MIGRATIONS, api_schema.upgrade),
    ("evidence", evidence_schema.MIGRATIONS, evidence_schema.upgrade),
    ("report_delivery", delivery.MIGRATIONS, delivery.upgrade),
    ("forward", forward.MIGRATIONS, forward.upgrade),
]


class SchemaNotCurrent(RuntimeError):
    pass


async def upgrade_all(settings: Settings) -> tuple[str, dict[str, list[int]]]:
    """Apply every pending migration of every component. Returns the backend and, per
    component, the versions applied now."""
    backend, core = await upgrade_database(settings)
    applied = {schema.CORE: core}
    async with await connect(settings) as conn:
        for name, _, upgrade in COMPONENTS:
            applied[name] = await upgrade(conn)
    return backend, applied


async def require_current(conn: psycopg.AsyncConnection) -> None:
    """Raise SchemaNotCurrent, naming what is missing, unless every migration is applied."""
    wanted: dict[str, Sequence[tuple[int, str, object]]] = {schema.CORE: schema.MIGRATIONS}
    wanted.update({name: migrations for name, migrations, _ in COMPONENTS})
    missing = await pending_migrations(conn, wanted)
    if missing:
        listed = "; ".join(f"{c} {', '.join(map(str, v))}" for c, v in missing.items())
        raise SchemaNotCurrent(
            f"the database schema is not up to date (missing migrations: {listed}); "
            "run `quantrac db upgrade` first"
        )
