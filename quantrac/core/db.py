"""The one way quantrac opens a PostgreSQL connection from its settings."""

from __future__ import annotations

import psycopg

from quantrac.core.settings import Settings


async def connect(settings: Settings) -> psycopg.AsyncConnection:
    if not settings.database_url:
        raise RuntimeError("QUANTRAC_DATABASE_URL is not set")
    return await psycopg.AsyncConnection.connect(
        settings.database_url, application_name="quantrac-ingest"
    )
