"""``quantrac report schedule check|run`` and ``quantrac report deliveries``."""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from quantrac.alerts.config import AlertConfigError, load_alerts_config
from quantrac.alerts.store import upgrade as upgrade_alerts
from quantrac.app import run_until_signalled
from quantrac.core.catalog import load_catalog
from quantrac.core.config_files import ConfigError
from quantrac.core.db import connect
from quantrac.core.registry import load_registry
from quantrac.core.settings import Settings
from quantrac.evidence import schema as evidence_schema
from quantrac.ingest.service import upgrade_database
from quantrac.regulations.tables import RegulationError, load_regulation_catalog
from quantrac.reports import delivery
from quantrac.reports.delivery import ReportSender, email_channel_spec, list_deliveries
from quantrac.reports.schedule import (
    ScheduleConfig,
    ScheduleConfigError,
    latest_due_period,
    load_schedule_config,
    reports_path,
)


def _load(settings: Settings, args: argparse.Namespace) -> tuple[ScheduleConfig, Any]:
    path = Path(args.schedules) if args.schedules else reports_path(settings.config_dir)
    config = load_schedule_config(path)
    catalog = load_catalog(settings.catalog_path)
    registry = load_registry(settings.stations_path, catalog)
    for schedule in config.schedules:
        if schedule.station and registry.get(schedule.station) is None:
            raise ScheduleConfigError(
                f"{path}: {schedule.id}: unknown station {schedule.station!r}"
            )
        if schedule.facility and not any(
            s.facility == schedule.facility for s in registry.stations.values()
        ):
            raise ScheduleConfigError(
                f"{path}: {schedule.id}: no station of the facility {schedule.facility!r}"
            )
    spec = None
    if config.email_channel:
        alerts = load_alerts_config(settings.alerts_path)
        spec = email_channel_spec(
            alerts.notifications, config.email_channel, alerts.source, alerts.lines
        )
    return config, spec


async def cmd_schedule(settings: Settings, args: argparse.Namespace) -> int:
    try:
        config, spec = _load(settings, args)
        regulations = load_regulation_catalog(
            settings.regulations_path, load_catalog(settings.catalog_path)
        )
    except (ScheduleConfigError, AlertConfigError, ConfigError, RegulationError) as e:
        print(f"quantrac report schedule: {e}", file=sys.stderr)
        return 2
    if args.schedule_command == "check":
        now = datetime.now(UTC)
        for s in config.schedules:
            first, last = latest_due_period(s, now)
            print(
                f"{s.id}: {s.target} {s.period} {s.format}/{s.lang} → {', '.join(s.recipients)};"
                f" latest due period {first.isoformat()} – {last.isoformat()}"
            )
        print(f"{config.source}: {len(config.schedules)} schedule(s) OK")
        return 0
    await upgrade_database(settings)
    conn = await connect(settings)
    await upgrade_alerts(conn)
    await evidence_schema.upgrade(conn)
    await delivery.upgrade(conn)
    await conn.commit()
    catalog = load_catalog(settings.catalog_path)
    sender = ReportSender(
        conn,
        config,
        lambda: load_registry(settings.stations_path, catalog),
        regulations,
        spec,
        engine_config=load_alerts_config(settings.alerts_path).engine,
        holdoff=timedelta(minutes=settings.alerts_holdoff_minutes),
    )
    try:
        if args.once:
            for schedule_id, start, outcome in await sender.tick(datetime.now(UTC)):
                print(f"{schedule_id} {start.isoformat()}: {outcome}")
            return 0
        stop = asyncio.Event()
        task: list[asyncio.Task[None]] = []

        async def begin() -> None:
            task.append(
                asyncio.create_task(delivery.run_sender(sender, stop, lambda: datetime.now(UTC)))
            )

        async def finish() -> None:
            stop.set()
            await asyncio.gather(*task)

        await run_until_signalled(begin, finish, args.duration)
        return 0
    finally:
        await conn.close()


async def cmd_deliveries(settings: Settings, args: argparse.Namespace) -> int:
    await upgrade_database(settings)
    async with await connect(settings) as conn:
        await delivery.upgrade(conn)
        rows = await list_deliveries(conn, args.limit)
    for r in rows:
        detail = r["file"] or ""
        if r["state"] != "sent":
            detail = f"next {r['next_attempt_at'].isoformat()}; {r['last_error'] or ''}"
        print(
            f"{r['schedule']:<24}{r['from'].isoformat()}  {r['state']:<8}"
            f"{r['attempts']:>3} attempt(s)  {detail}"
        )
    if not rows:
        print("nothing sent yet")
    return 0


def register(report_sub: Any) -> None:
    schedule = report_sub.add_parser(
        "schedule", help="scheduled reports (config/reports.yaml): check, run the sender"
    )
    s_sub = schedule.add_subparsers(dest="schedule_command", required=True, metavar="ACTION")
    for name, text in (
        ("check", "validate the schedules and show each one's latest due period"),
        ("run", "build and e-mail due reports, once per period, with retries"),
    ):
        action = s_sub.add_parser(name, help=text)
        action.add_argument("--schedules", help="default: config/reports.yaml")
        action.set_defaults(handler=cmd_schedule)
        if name == "run":
            action.add_argument("--once", action="store_true", help="one round, then exit")
            action.add_argument("--duration", type=float, help="stop after this many seconds")
    deliveries = report_sub.add_parser("deliveries", help="what the scheduled reports sent")
    deliveries.add_argument("--limit", type=int, default=100)
    deliveries.set_defaults(handler=cmd_deliveries)
