"""Planned work in the alert path: drop what a maintenance window suppresses, and (with a
calibration hold-off set) the exceedances and warnings whose data time lies in the hold-off after
a calibration window, before the alert store sees them. The windows are read from the station log
in the alert transaction, and only when such a condition is in the batch (most batches have
none)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import timedelta

import psycopg

from quantrac.alerts import station_log
from quantrac.alerts.engine import Change, Transition
from quantrac.alerts.maintenance import (
    HELD_OFF_KINDS,
    SUPPRESSED_KINDS,
    MaintenanceWindow,
    apply_holdoff,
    apply_windows,
)

log = logging.getLogger(__name__)


async def without_planned(
    conn: psycopg.AsyncConnection,
    transitions: Sequence[Transition],
    holdoff: timedelta = timedelta(0),
) -> tuple[list[Transition], list[tuple[Transition, MaintenanceWindow]]]:
    """What may reach the alert store, and what a window suppressed. Transitions held off after
    a calibration are dropped too (logged; the readings stay stored, flagged ``holdoff``)."""
    kinds = SUPPRESSED_KINDS | HELD_OFF_KINDS if holdoff > timedelta(0) else SUPPRESSED_KINDS
    candidates = [t for t in transitions if t.kind in kinds and t.change is not Change.CLEAR]
    if not candidates:
        return list(transitions), []
    cur = await conn.execute("SELECT to_regclass('station_log') IS NOT NULL")
    row = await cur.fetchone()
    if not row or not row[0]:
        return list(transitions), []
    stations = sorted({t.station_id for t in candidates})
    first = min(t.at for t in candidates) - max(holdoff, timedelta(0))
    last = max(t.at for t in candidates) + timedelta(microseconds=1)
    windows = await station_log.windows_between(conn, stations, first, last)
    kept, dropped = apply_windows(transitions, windows)
    kept, held = apply_holdoff(kept, windows, holdoff)
    for t in held:
        log.info(
            "alert held off after a calibration",
            extra={
                "event": "alert_held_off",
                "station": t.station_id,
                "param": t.param,
                "kind": t.kind.value,
            },
        )
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
