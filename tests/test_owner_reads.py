"""The read functions the table owners offer to the API, the demo and the tools (issue 10 item 4),
against the real PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg

from quantrac.ingest import schema, writer
from quantrac.ingest.schema import POSTGRES, StorageOptions, upgrade

T0 = datetime(2026, 11, 2, 8, 0, tzinfo=UTC)
MIN = timedelta(minutes=1)


async def _stored(conn: psycopg.AsyncConnection) -> None:
    await upgrade(conn, StorageOptions(backend=POSTGRES))
    for sid, kind, active in (
        ("WW1", "wastewater", True),
        ("AIR1", "air", True),
        ("OLD", "air", False),
    ):
        await conn.execute(
            "INSERT INTO stations (id, name, kind, facility, province, lat, lon, cadence_s, "
            "parameters, active) VALUES (%s, %s, %s, 'F', 'P', 21, 106, 300, '{}', %s)",
            [sid, sid, kind, active],
        )
    rows = [
        ("WW1", "COD", T0, 10.0, 0),
        ("WW1", "COD", T0 + 5 * MIN, 11.0, 1),
        ("WW1", "pH", T0 + 10 * MIN, 7.0, 0),
        ("WW1", "COD", T0 - timedelta(days=3), 9.0, 0),
        ("OLD", "PM10", T0, 1.0, 0),
    ]
    for sid, param, at, value, status in rows:
        await conn.execute(
            "INSERT INTO readings (station_id, param, measured_at, value, status, received_at) "
            "VALUES (%s, %s, %s, %s, %s, %s)",
            [sid, param, at, value, status, at],
        )
    await conn.execute(
        "INSERT INTO rejections (received_at, station_id, topic, source, reason, field, value, "
        "detail, payload_excerpt) VALUES (%s, 'AIR1', 't', 'mqtt', 'unit_mismatch', 'f', 'v', "
        "'d', '')",
        [T0],
    )
    await conn.commit()


async def test_summaries_counts_and_dumps(db_conn: psycopg.AsyncConnection) -> None:
    await _stored(db_conn)
    summaries = await schema.station_summaries(db_conn)
    # Active stations only, by kind then id; a station with no reading has 0 and no newest.
    assert [(s.station_id, s.kind, s.readings, s.newest, s.rejected) for s in summaries] == [
        ("AIR1", "air", 0, None, 1),
        ("WW1", "wastewater", 4, T0 + 10 * MIN, 0),
    ]
    assert await schema.stored_counts(db_conn) == (5, 1)
    assert await schema.all_rejections(db_conn) == [("AIR1", "unit_mismatch", "d")]
    assert len(await writer.all_readings(db_conn)) == 5


async def test_reading_reads(db_conn: psycopg.AsyncConnection) -> None:
    await _stored(db_conn)
    assert await writer.newest_per_station(db_conn, T0 - MIN) == {
        "WW1": T0 + 10 * MIN,
        "OLD": T0,
    }
    latest = await writer.latest_values(
        db_conn, "WW1", ["COD", "pH", "NH4"], T0 - timedelta(days=1)
    )
    assert latest == {"COD": (T0 + 5 * MIN, 11.0, 1), "pH": (T0 + 10 * MIN, 7.0, 0)}
    assert await writer.raw_series(db_conn, "WW1", "COD", T0, T0 + 5 * MIN) == [(T0, 10.0, 0)]
    assert await writer.flagged_readings(db_conn, "WW1", "COD", T0, T0 + MIN * 60) == [
        (T0 + 5 * MIN, 1)
    ]
    assert await writer.count_between(db_conn, "WW1", "COD", T0 - MIN, T0 + 6 * MIN, T0) == 2
    assert await writer.count_between(db_conn, "WW1", "COD", T0, T0 + 6 * MIN, T0) == 1


async def test_newest_within_a_window(db_conn: psycopg.AsyncConnection) -> None:
    await _stored(db_conn)
    got = await writer.newest_within(
        db_conn,
        [
            ("WW1", "COD", T0, T0 + 30 * MIN),  # the newest COD up to the window's end
            ("WW1", "", T0, T0 + 30 * MIN),  # '' : any parameter of the station
            ("WW1", "COD", T0, T0 + 2 * MIN),  # not after the window's end
            ("WW1", "COD", T0 - timedelta(days=1) - MIN, T0 - timedelta(days=1)),  # 2 days back
            ("WW1", "COD", T0 - timedelta(days=1), T0 - MIN),  # exactly 2 days before: not
            ("AIR1", "PM10", T0, T0 + MIN),  # no readings at all
        ],
    )
    assert got == [
        T0 + 5 * MIN,
        T0 + 10 * MIN,
        T0,
        T0 - timedelta(days=3),
        None,
        None,
    ]
    assert await writer.newest_within(db_conn, []) == []
