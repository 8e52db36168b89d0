"""``quantrac maintenance add|list|cancel``: maintenance windows and the station log."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, timedelta
from typing import Any

from quantrac.alerts import station_log
from quantrac.alerts.maintenance import LOG_KINDS, WindowError, check_window
from quantrac.cli.util import add_lang_arg, cli_actor, period_texts, time_arg
from quantrac.core.catalog import load_catalog
from quantrac.core.db import connect
from quantrac.core.i18n import translate
from quantrac.core.registry import load_registry
from quantrac.core.settings import Settings
from quantrac.ingest.service import upgrade_database


async def cmd_maintenance(settings: Settings, args: argparse.Namespace) -> int:
    lang = args.lang
    catalog = load_catalog(settings.catalog_path)
    registry = load_registry(settings.stations_path, catalog)
    declared = {s.id: list(s.parameters) for s in registry.stations.values()}
    try:
        if args.maintenance_command == "add":
            check_window(
                args.station,
                args.kind,
                args.start,
                args.end,
                args.param or [],
                args.reason,
                declared,
            )
    except WindowError as exc:
        print(f"quantrac maintenance add: {exc.text(lang)}", file=sys.stderr)
        return 2
    await upgrade_database(settings)
    async with await connect(settings) as conn:
        await station_log.upgrade(conn)
        if args.maintenance_command == "add":
            entry = await station_log.add_entry(
                conn,
                args.station,
                args.kind,
                args.start,
                args.end,
                args.param or [],
                args.reason,
                cli_actor(),
            )
            await conn.commit()
            scope = ", ".join(sorted(entry.params)) or translate("report.whole_station", lang)
            print(
                translate(
                    "cli.maintenance.added",
                    lang,
                    id=entry.id,
                    kind=translate(f"report.log.{entry.kind}", lang).lower(),
                    station=entry.station_id,
                    scope=scope,
                    **period_texts(entry.start, entry.end, lang),
                )
            )
            return 0
        if args.maintenance_command == "cancel":
            try:
                await station_log.cancel_entry(conn, args.id, cli_actor())
            except WindowError as exc:
                print(f"quantrac maintenance cancel: {exc.text(lang)}", file=sys.stderr)
                return 2
            await conn.commit()
            print(translate("cli.maintenance.cancelled", lang, id=args.id))
            return 0
        if args.station and args.station not in registry.stations:
            unknown = translate("error.window.station", lang, station=repr(args.station))
            print(f"quantrac maintenance list: {unknown}", file=sys.stderr)
            return 2
        now = datetime.now(UTC)
        start = args.start or now - timedelta(days=30)
        end = args.end or now + timedelta(days=30)
        entries = await station_log.windows_between(
            conn, [args.station] if args.station else None, start, end
        )
    for e in entries:
        scope = ",".join(sorted(e.params)) or "*"
        print(
            f"{e.id:>5}  {e.station_id:<20}{e.kind:<13}{scope:<14}{e.start.isoformat()} – "
            f"{e.end.isoformat()}  {e.actor}  {e.reason}"
        )
    if not entries:
        print(translate("cli.maintenance.none", lang))
    return 0


def register(sub: Any) -> None:
    m = sub.add_parser(
        "maintenance",
        help="maintenance windows and the station log (suppress fault, calibration and "
        "data-loss alerts during planned work)",
    )
    m_sub = m.add_subparsers(dest="maintenance_command", required=True, metavar="ACTION")
    add = m_sub.add_parser("add", help="plan a window / log maintenance, repair, calibration …")
    add.add_argument("--station", required=True)
    add.add_argument("--from", dest="start", required=True, type=time_arg)
    add.add_argument("--to", dest="end", required=True, type=time_arg)
    add.add_argument("--param", action="append", help="only this parameter (repeatable)")
    add.add_argument("--kind", choices=LOG_KINDS, default="maintenance")
    add.add_argument("--reason", required=True)
    add_lang_arg(add)
    add.set_defaults(handler=cmd_maintenance)
    listing = m_sub.add_parser("list", help="log entries (default: 30 days back and ahead)")
    listing.add_argument("--station")
    listing.add_argument("--from", dest="start", type=time_arg)
    listing.add_argument("--to", dest="end", type=time_arg)
    add_lang_arg(listing)
    listing.set_defaults(handler=cmd_maintenance)
    cancel = m_sub.add_parser("cancel", help="cancel an entry (it stays in the log, marked)")
    cancel.add_argument("id", type=int)
    add_lang_arg(cancel)
    cancel.set_defaults(handler=cmd_maintenance)
