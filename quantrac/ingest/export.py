"""Export what was stored for a station, with status and received time, as CSV or JSON lines.

``flag`` names what a reading was measured during (a maintenance window's kind, from the station
log one layer up): the reading is exported all the same, flagged, never hidden."""

from __future__ import annotations

import csv
import json
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import IO, Any

import psycopg

from quantrac.core.contract import Status

COLUMNS = ("station", "param", "time", "value", "status", "received_at", "flag")
Flagger = Callable[[str, str, datetime], str | None]


async def stored_readings(
    conn: psycopg.AsyncConnection,
    station_id: str,
    start: datetime,
    end: datetime,
    params: list[str] | None = None,
) -> AsyncIterator[tuple[Any, ...]]:
    query = (
        "SELECT station_id, param, measured_at, value, status, received_at FROM readings "
        "WHERE station_id = %s AND measured_at >= %s AND measured_at < %s"
    )
    args: list[Any] = [station_id, start, end]
    if params:
        query += " AND param = ANY(%s)"
        args.append(params)
    query += " ORDER BY measured_at, param"
    async with conn.cursor(name="export_readings") as cur:
        await cur.execute(query, args)
        async for row in cur:
            yield row


async def write_export(
    rows: AsyncIterator[tuple[Any, ...]], out: IO[str], fmt: str, flag: Flagger | None = None
) -> int:
    count = 0
    writer = csv.writer(out, lineterminator="\n") if fmt == "csv" else None
    if writer is not None:
        writer.writerow(COLUMNS)
    async for station, param, measured_at, value, status, received_at in rows:
        status_code = Status(status).code
        mark = flag(station, param, measured_at) if flag else None
        if writer is not None:
            writer.writerow(
                [
                    station,
                    param,
                    measured_at.isoformat(),
                    repr(value),
                    status_code,
                    received_at.isoformat(),
                    mark or "",
                ]
            )
        else:
            out.write(
                json.dumps(
                    {
                        "station": station,
                        "param": param,
                        "time": measured_at.isoformat(),
                        "value": value,
                        "status": status_code,
                        "received_at": received_at.isoformat(),
                        "flag": mark,
                    },
                    ensure_ascii=False,
                )
                + "\n"
            )
        count += 1
    return count
