"""``quantrac report verify``, ``quantrac period lock|unlock|list`` and
``quantrac readings correct|held``."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psycopg

from quantrac.cli.util import add_lang_arg, cli_actor, period_texts, time_arg
from quantrac.core.catalog import load_catalog
from quantrac.core.contract import STATUS_BY_CODE
from quantrac.core.db import connect
from quantrac.core.i18n import format_time, translate, zone_text
from quantrac.core.registry import load_registry
from quantrac.core.settings import Settings
from quantrac.evidence import schema
from quantrac.evidence.locks import (
    Correction,
    LockError,
    check_lock_request,
    correct_reading,
    held_readings,
    list_locks,
    lock_period,
    resolve_held,
    unlock_period,
)
from quantrac.evidence.seal import (
    ReadingsDigest,
    period_closed,
    readings_digest,
    seal_file,
    verify_file,
)
from quantrac.ingest.service import upgrade_database


async def open_evidence(settings: Settings) -> psycopg.AsyncConnection:
    await upgrade_database(settings)
    conn = await connect(settings)
    await schema.upgrade(conn)
    return conn


async def start_sealed_snapshot(conn: psycopg.AsyncConnection) -> None:
    """Report and digest read one snapshot: a late reading cannot fall between them."""
    await conn.commit()
    await conn.set_isolation_level(psycopg.IsolationLevel.REPEATABLE_READ)


async def seal_written_file(
    conn: psycopg.AsyncConnection,
    path: Path,
    *,
    kind: str,
    request: dict[str, Any],
    stations: list[str],
    start: datetime,
    end: datetime,
    digest: ReadingsDigest,
) -> str:
    seal = await seal_file(
        conn,
        path,
        kind=kind,
        request=request,
        stations=stations,
        start=start,
        end=end,
        readings=digest,
        now=datetime.now(UTC),
        actor=cli_actor(),
    )
    await conn.commit()
    return (
        f"sealed: file sha256 {seal.file_sha256}, {digest.count} readings sha256 "
        f"{digest.sha256} (verify with: quantrac report verify {path})"
    )


async def sealable_digest(
    conn: psycopg.AsyncConnection,
    stations: list[str],
    start: datetime,
    end: datetime,
    params: list[str] | None = None,
) -> ReadingsDigest | None:
    if not period_closed(end, datetime.now(UTC)):
        return None
    return await readings_digest(conn, stations, start, end, params)


async def cmd_verify(settings: Settings, args: argparse.Namespace) -> int:
    path = Path(args.file)
    if not path.is_file():
        print(f"quantrac report verify: {path}: no such file", file=sys.stderr)
        return 2
    async with await open_evidence(settings) as conn:
        try:
            verdict = await verify_file(conn, path)
        except (ValueError, KeyError) as exc:
            print(f"quantrac report verify: bad seal file: {exc}", file=sys.stderr)
            return 2
    if args.format == "json":
        print(json.dumps(verdict.to_json(), ensure_ascii=False, indent=1, default=str))
    else:
        print(("OK: " if verdict.ok else "MISMATCH: ") + verdict.message)
        for c in verdict.corrections:
            print(
                f"  correction {c['at']} by {c['actor']}: {c['station']} {c['param']} "
                f"{c['time']} {c['action']} {c['old_value']} → {c['new_value']} ({c['reason']})"
            )
    return 0 if verdict.ok else 1


def _known_stations(settings: Settings) -> set[str]:
    catalog = load_catalog(settings.catalog_path)
    return set(load_registry(settings.stations_path, catalog).stations)


async def cmd_period(settings: Settings, args: argparse.Namespace) -> int:
    lang = args.lang
    async with await open_evidence(settings) as conn:
        try:
            if args.period_command == "lock":
                check_lock_request(
                    args.station,
                    args.start,
                    args.end,
                    args.reason,
                    _known_stations(settings),
                    datetime.now(UTC),
                )
                lock = await lock_period(
                    conn, args.station, args.start, args.end, args.reason, cli_actor()
                )
                await conn.commit()
                scope = lock.station_id or translate("cli.every_station", lang)
                print(
                    translate(
                        "cli.period.locked",
                        lang,
                        id=lock.id,
                        scope=scope,
                        **period_texts(lock.start, lock.end, lang),
                    )
                )
                return 0
            if args.period_command == "unlock":
                lock = await unlock_period(conn, args.id, cli_actor())
                await conn.commit()
                print(translate("cli.period.unlocked", lang, id=lock.id))
                return 0
        except LockError as exc:
            print(f"quantrac period {args.period_command}: {exc.text(lang)}", file=sys.stderr)
            return 2
        locks = await list_locks(conn, active_only=not args.all)
    for lock in locks:
        state = (
            translate("cli.period.active", lang)
            if lock.unlocked_at is None
            else translate("cli.period.lifted_by", lang, actor=lock.unlocked_by)
        )
        print(
            f"{lock.id:>4}  {lock.station_id or '*':<20}{lock.start.isoformat()} – "
            f"{lock.end.isoformat()}  {lock.locked_by}  {state}  {lock.reason}"
        )
    if not locks:
        print(translate("cli.period.none", lang))
    return 0


async def cmd_readings(settings: Settings, args: argparse.Namespace) -> int:
    lang = args.lang
    async with await open_evidence(settings) as conn:
        try:
            if args.readings_command == "correct":
                if args.station not in _known_stations(settings):
                    raise LockError("error.lock.station", station=repr(args.station))
                if args.delete == (args.value is not None):
                    raise LockError("error.lock.value_or_delete")
                status = None
                if args.status is not None:
                    if args.status not in STATUS_BY_CODE:
                        raise LockError("error.lock.status")
                    status = STATUS_BY_CODE[args.status]
                action = await correct_reading(
                    conn,
                    Correction(
                        args.station, args.param, args.time, args.value, status, args.reason
                    ),
                    cli_actor(),
                )
                print(
                    translate(
                        "cli.readings.corrected",
                        lang,
                        action=translate(f"cli.readings.{action}", lang),
                        station=args.station,
                        param=args.param,
                        time=format_time(args.time),
                        zone=zone_text(lang=lang),
                    )
                )
                return 0
            if args.apply is not None or args.discard is not None:
                held_id = args.apply if args.apply is not None else args.discard
                result = await resolve_held(
                    conn, held_id, args.apply is not None, args.reason or "", cli_actor()
                )
                print(translate(f"cli.readings.{result}", lang, id=held_id))
                return 0
        except LockError as exc:
            print(f"quantrac readings {args.readings_command}: {exc.text(lang)}", file=sys.stderr)
            return 2
        rows = await held_readings(conn)
    for r in rows:
        print(
            translate(
                "cli.readings.held_row",
                lang,
                id=r["id"],
                lock=r["lock"],
                station=r["station"],
                param=r["param"],
                time=r["time"].isoformat(),
                value=f"{r['value']:g}",
                status=f"{r['status']:02d}",
                received=r["received_at"].isoformat(),
            )
        )
    if not rows:
        print(translate("cli.readings.none_held", lang))
    return 0


def register_verify(report_sub: Any) -> None:
    verify = report_sub.add_parser(
        "verify", help="check a sealed report or export against its seal and the stored data"
    )
    verify.add_argument("file")
    verify.add_argument("--format", choices=("text", "json"), default="text")
    verify.set_defaults(handler=cmd_verify)


def register(sub: Any) -> None:
    period = sub.add_parser("period", help="lock a closed period's readings (admin)")
    p_sub = period.add_subparsers(dest="period_command", required=True, metavar="ACTION")
    lock = p_sub.add_parser("lock", help="lock a period: its readings change only by correction")
    lock.add_argument("--station", help="one station (default: every station)")
    lock.add_argument("--from", dest="start", required=True, type=time_arg)
    lock.add_argument("--to", dest="end", required=True, type=time_arg)
    lock.add_argument("--reason", required=True)
    add_lang_arg(lock)
    lock.set_defaults(handler=cmd_period)
    unlock = p_sub.add_parser("unlock", help="lift a lock (recorded)")
    unlock.add_argument("id", type=int)
    add_lang_arg(unlock)
    unlock.set_defaults(handler=cmd_period)
    listing = p_sub.add_parser("list", help="locks (active ones; --all for lifted ones too)")
    listing.add_argument("--all", action="store_true")
    add_lang_arg(listing)
    listing.set_defaults(handler=cmd_period)

    readings = sub.add_parser("readings", help="audited corrections of stored readings (admin)")
    r_sub = readings.add_subparsers(dest="readings_command", required=True, metavar="ACTION")
    correct = r_sub.add_parser("correct", help="change, add or delete one reading, audited")
    correct.add_argument("--station", required=True)
    correct.add_argument("--param", required=True)
    correct.add_argument("--time", required=True, type=time_arg)
    correct.add_argument("--value", type=float)
    correct.add_argument("--status", help="00, 01 or 02 (default 00)")
    correct.add_argument("--delete", action="store_true")
    correct.add_argument("--reason", required=True)
    add_lang_arg(correct)
    correct.set_defaults(handler=cmd_readings)
    held = r_sub.add_parser(
        "held", help="readings that arrived for a locked period: list, --apply or --discard ID"
    )
    group = held.add_mutually_exclusive_group()
    group.add_argument("--apply", type=int, metavar="ID")
    group.add_argument("--discard", type=int, metavar="ID")
    held.add_argument("--reason", help="why (for --apply / --discard)")
    add_lang_arg(held)
    held.set_defaults(handler=cmd_readings)
