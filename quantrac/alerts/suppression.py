"""Planned work in the alert path: drop what a maintenance window suppresses, before the alert
store sees it. The windows are read from the station log in the alert transaction, and only
when a fault, calibration or data-loss condition is in the batch (most batches have none)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta

import psycopg

from quantrac.alerts import station_log
from quantrac.alerts.engine import Change, Transition
from quantrac.alerts.maintenance import SUPPRESSED_KINDS, MaintenanceWindow, apply_windows

log = logging.getLogger(__name__)


async def without_planned(
    conn: psycopg.AsyncConnection, transitions: Sequence[Transition]
) -> tuple[list[Transition], list[tuple[Transition, MaintenanceWindow]]]:
    candidates = [
        t for t in transitions if t.kind in SUPPRESSED_KINDS and t.change is not Change.CLEAR
    ]
    if not candidates:
        return list(transitions), []
    cur = await conn.execute("SELECT to_regclass('station_log') IS NOT NULL")
    row = await cur.fetchone()
    if not row or not row[0]:
        return list(transitions), []
    stations = sorted({t.station_id for t in candidates})
    first = min(t.at for t in candidates)
    last = max(t.at for t in candidates) + timedelta(microseconds=1)
    windows = await station_log.windows_between(conn, stations, first, last)
    kept, dropped = apply_windows(transitions, windows)
    for t, window in dropped:
        log.info(
            "alert suppressed by a maintenance window",
            extra={
                "event": "alert_suppressed",
                "station": t.station_id,
                "param": t.param,
                "kind": t.kind.value,
                "window": window.id,
            },
        )
    return kept, dropped
