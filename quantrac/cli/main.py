"""The `quantrac` command and its subcommands."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

from quantrac.alerts.maintenance import reading_flag
from quantrac.alerts.replay import register as register_replay
from quantrac.api.users import ROLES
from quantrac.app import App, run_until_signalled
from quantrac.cli.aqi import register as register_aqi
from quantrac.cli.check import register_check
from quantrac.cli.evidence import (
    open_evidence,
    seal_written_file,
    sealable_digest,
    start_sealed_snapshot,
)
from quantrac.cli.evidence import register as register_evidence
from quantrac.cli.forward import register as register_forward
from quantrac.cli.maintenance import register as register_maintenance
from quantrac.cli.regulations import register as register_regulations
from quantrac.cli.reports import register as register_reports
from quantrac.cli.util import add_lang_arg
from quantrac.core.catalog import load_catalog
from quantrac.core.contract import parse_time
from quantrac.core.db import connect
from quantrac.core.i18n import translate
from quantrac.core.logs import configure_logging
from quantrac.core.registry import RegistryError, load_registry
from quantrac.core.settings import Settings, SettingsError, load_settings
from quantrac.core.tasks import cancel_and_wait, tune_garbage_collector
from quantrac.ingest.export import stored_readings, write_export
from quantrac.ingest.files import HISTORICAL_SOURCE, ingest_folder
from quantrac.ingest.service import IngestService, upgrade_database
from quantrac.reports.exceedances import fetch_station_log

log = logging.getLogger(__name__)


def _time_arg(text: str) -> Any:
    try:
        return parse_time(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None


async def cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    app = App(settings)
    await run_until_signalled(app.start, app.stop, args.duration)
    return 0


def _die_with_parent(parent: int) -> None:
    """An alert worker of `quantrac run` ends with it, as the engine in its process would: on
    Linux the kernel kills it the moment the parent dies (no second worker of the same lease
    owner alive beside its replacement); elsewhere it notices within a second."""
    if sys.platform.startswith("linux"):
        import ctypes

        pr_set_pdeathsig = 1
        ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)
    if os.getppid() != parent:
        raise SystemExit(0)  # already gone before the line above


async def cmd_alerts(settings: Settings, args: argparse.Namespace) -> int:
    from quantrac.alerts.service import AlertService
    from quantrac.api.app import build_api
    from quantrac.web import WebServer

    service = AlertService(settings)
    service.load_configuration()
    web: list[WebServer] = []
    watchdog: list[asyncio.Task[None]] = []

    def health() -> dict[str, object]:
        report = service.health()
        return {"status": "degraded" if report["alerts_lagging"] else "ok", **report}

    if args.parent:
        _die_with_parent(args.parent)

    async def orphaned(parent: int) -> None:
        # Started by `quantrac run`: stop cleanly once it is gone, even if it was killed.
        while os.getppid() == parent:
            await asyncio.sleep(1.0)
        log.warning("parent process gone; alert worker stops", extra={"event": "alerts_orphaned"})
        os.kill(os.getpid(), signal.SIGTERM)

    async def start() -> None:
        tune_garbage_collector()
        if args.parent:
            watchdog.append(asyncio.create_task(orphaned(args.parent)))
        await service.start()
        if settings.http_port:
            # /metrics and /healthz only: the alert engine alone serves no API.
            app = build_api(None, metrics=service.metrics_registry, health=health)
            server = WebServer(app, settings.http_host, settings.http_port)
            await server.start()
            web.append(server)

    async def stop() -> None:
        for server in web:
            await server.stop()
        await service.stop()
        await cancel_and_wait(watchdog)

    await run_until_signalled(start, stop, args.duration)
    return 0


async def cmd_api(settings: Settings, args: argparse.Namespace) -> int:
    from quantrac.api.app import ApiService, FileRegistry, build_api
    from quantrac.web import WebServer, web_servers

    catalog = load_catalog(settings.catalog_path)
    api = ApiService(settings, catalog, FileRegistry(settings.stations_path, catalog))
    server: list[WebServer] = []

    async def start() -> None:
        context = await api.start()
        for web in web_servers(build_api(context), settings):
            await web.start()
            server.append(web)
            scheme = "https" if web.server.config.ssl_certfile else "http"
            host = web.server.config.host
            print(f"quantrac api on {scheme}://{host}:{web.port}/ (OpenAPI at /docs)")

    async def stop() -> None:
        for web in server:
            await web.stop()
        await api.stop()

    await run_until_signalled(start, stop, args.duration)
    return 0


def _read_password(args: argparse.Namespace) -> str | None:
    password = sys.stdin.readline().rstrip("\n") if args.password_stdin else None
    return password or os.environ.get("QUANTRAC_NEW_PASSWORD")


def _scope_from_args(args: argparse.Namespace) -> Any:
    from quantrac.api.users import Scope

    provinces, facilities = args.province or [], args.facility or []
    stations = args.station or []
    if not (provinces or facilities or stations):
        return None
    return Scope(frozenset(provinces), frozenset(facilities), frozenset(stations))


async def cmd_users(settings: Settings, args: argparse.Namespace) -> int:
    from quantrac.api import schema
    from quantrac.api.users import (
        UserError,
        add_user,
        audit,
        get_user,
        list_users,
        revoke_tokens_of,
        set_disabled,
        set_password,
        set_scope,
    )

    lang = args.lang

    def say(key: str, **params: Any) -> str:
        return translate(key, lang, **params)

    def scope_text(scope: Any) -> str:
        return str(scope.to_json()) if scope else say("cli.every_station")

    await upgrade_database(settings)
    async with await connect(settings) as conn:
        await schema.upgrade(conn)
        if args.users_command == "list":
            for user in await list_users(conn, include_disabled=True):
                shown = scope_text(user.scope)
                state = say("cli.users.disabled" if user.disabled else "cli.users.enabled")
                print(f"{user.username:<24}{user.role:<12}{state:<10}{user.display_name}  {shown}")
            return 0
        if args.users_command == "add":
            password = _read_password(args)
            if not password:
                print(say("cli.users.password_needed"), file=sys.stderr)
                return 2
            try:
                user = await add_user(
                    conn,
                    args.username,
                    args.role,
                    password,
                    args.name or "",
                    _scope_from_args(args),
                )
            except UserError as exc:
                print(f"quantrac users add: {exc.text(lang)}", file=sys.stderr)
                return 2
            details = {"role": user.role, "scope": user.scope.to_json() if user.scope else None}
            await audit(conn, "cli", "user.add", f"user:{user.username}", details)
            await conn.commit()
            print(say("cli.users.added", user=user.username, role=user.role))
            return 0
        target = await get_user(conn, args.username)
        if target is None:
            unknown = say("cli.users.no_user", user=repr(args.username))
            print(f"quantrac users {args.users_command}: {unknown}", file=sys.stderr)
            return 2
        try:
            if args.users_command == "passwd":
                password = _read_password(args)
                if not password:
                    print(say("cli.users.new_password_needed"), file=sys.stderr)
                    return 2
                await set_password(conn, target, password)
                done = say("cli.users.done.passwd")
            elif args.users_command in ("disable", "enable"):
                await set_disabled(conn, target, args.users_command == "disable")
                done = say(f"cli.users.done.{args.users_command}")
            elif args.users_command == "scope":
                scope = None if args.unrestricted else _scope_from_args(args)
                if scope is None and not args.unrestricted:
                    print(say("cli.users.scope_needed"), file=sys.stderr)
                    return 2
                await set_scope(conn, target, args.role or target.role, scope)
                done = say("cli.users.done.scope", scope=scope_text(scope))
            else:  # revoke
                done = say("cli.users.done.revoke", count=await revoke_tokens_of(conn, target.id))
        except UserError as exc:
            print(f"quantrac users {args.users_command}: {exc.text(lang)}", file=sys.stderr)
            return 2
        await audit(conn, "cli", f"user.{args.users_command}", f"user:{target.username}", {})
        await conn.commit()
    print(say("cli.users.done", user=target.username, done=done))
    return 0


async def cmd_db_upgrade(settings: Settings, args: argparse.Namespace) -> int:
    from quantrac.upgrade import upgrade_all

    backend, applied = await upgrade_all(settings)
    done = "; ".join(f"{c} {', '.join(map(str, v))}" for c, v in applied.items() if v)
    print(
        f"database upgraded: backend {backend}; migrations applied: "
        f"{done or 'none (already up to date)'}"
    )
    return 0


def cmd_stations_check(settings: Settings, args: argparse.Namespace) -> int:
    catalog = load_catalog(settings.catalog_path)
    path = Path(args.file) if args.file else settings.stations_path
    try:
        registry = load_registry(path, catalog)
    except RegistryError as exc:
        print(f"{len(exc.issues)} problem(s) in {path}:", file=sys.stderr)
        for issue in exc.issues:
            print(f"  {issue}", file=sys.stderr)
        return 1
    kinds: dict[str, int] = {}
    for station in registry.stations.values():
        kinds[station.kind] = kinds.get(station.kind, 0) + 1
    summary = ", ".join(f"{n} {kind}" for kind, n in sorted(kinds.items()))
    print(f"{path}: {len(registry.stations)} stations OK ({summary})")
    return 0


def cmd_stations_credentials(settings: Settings, args: argparse.Namespace) -> int:
    import json

    from quantrac import broker_auth

    catalog = load_catalog(settings.catalog_path)
    registry = load_registry(settings.stations_path, catalog)
    folder = Path(args.dir) if args.dir else settings.broker_auth_path
    services = broker_auth.service_accounts(settings.mqtt_share_group, settings.alerts_share_group)
    try:
        accounts, issued, removed = broker_auth.update_accounts(
            broker_auth.load_accounts(folder),
            registry.stations,
            services,
            rotate=args.rotate or (),
            rotate_all=args.rotate_all,
        )
    except broker_auth.CredentialsError as exc:
        print(f"quantrac stations credentials: {exc}", file=sys.stderr)
        return 2
    broker_auth.write_accounts(folder, accounts, services)
    if args.format == "json":
        print(json.dumps({"issued": broker_auth.issued_json(issued), "removed": removed}))
    else:
        for item in issued:
            print(f"{item.account}\t{item.secret}\t({item.kind}, {item.reason})")
        print(
            f"{len(accounts)} accounts in {folder} ({len(issued)} new or rotated, "
            f"{len(removed)} removed). The secrets above are shown once and stored only "
            "hashed: give each station its own now. Restart the broker to apply.",
            file=sys.stderr,
        )
    return 0


async def cmd_ingest_files(settings: Settings, args: argparse.Namespace) -> int:
    service = IngestService(settings)
    service.load_configuration()
    folder = Path(args.dir)
    if not folder.is_dir():
        print(f"{folder}: not a folder", file=sys.stderr)
        return 2
    await service.start_without_mqtt()
    try:
        assert service.receiver is not None
        source = HISTORICAL_SOURCE if args.historical else "file"
        outcomes = await ingest_folder(folder, service.receiver, source=source)
    finally:
        await service.stop()
    rejected_files = sum(1 for o in outcomes if o.rejected)
    stored = sum(o.stored for o in outcomes)
    duplicates = sum(o.duplicates for o in outcomes)
    problems = sum(len(o.problems) for o in outcomes)
    print(
        f"{len(outcomes)} files: {stored} readings stored, {duplicates} duplicates, "
        f"{problems} rejected lines; {rejected_files} files moved to rejected/"
    )
    return 1 if rejected_files else 0


async def cmd_export_readings(settings: Settings, args: argparse.Namespace) -> int:
    if args.end <= args.start:
        print("--to must be after --from", file=sys.stderr)
        return 2
    params = args.param or None
    async with await open_evidence(settings) as conn:
        await start_sealed_snapshot(conn)
        holdoff = timedelta(minutes=settings.alerts_holdoff_minutes)
        # A calibration that ended up to a hold-off before the span still flags its start.
        windows = await fetch_station_log(conn, [args.station], args.start - holdoff, args.end)

        def flag(station: str, param: str, at: datetime) -> str | None:
            return reading_flag(windows, station, param, at, holdoff)

        rows = stored_readings(conn, args.station, args.start, args.end, params)
        if not args.output:
            count = await write_export(rows, sys.stdout, args.format, flag)
            print(f"{count} readings exported", file=sys.stderr)
            return 0
        with open(args.output, "w", encoding="utf-8", newline="") as out:
            count = await write_export(rows, out, args.format, flag)
        digest = await sealable_digest(conn, [args.station], args.start, args.end, params)
        await conn.commit()
        print(f"{count} readings exported", file=sys.stderr)
        if digest is not None:
            note = await seal_written_file(
                conn,
                Path(args.output),
                kind="export readings",
                request={"format": args.format, "params": params},
                stations=[args.station],
                start=args.start,
                end=args.end,
                digest=digest,
            )
            print(note, file=sys.stderr)
    return 0


async def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    from quantrac.demo import run_demo

    if "QUANTRAC_LOG_LEVEL" not in os.environ:
        # The demo talks to a person at a terminal: only problems, in plain text.
        configure_logging("WARNING", "text")

    return await run_demo(settings, duration=args.duration, workdir=args.workdir, lang=args.lang)


async def cmd_simulate(settings: Settings, args: argparse.Namespace) -> int:
    from quantrac.cli.simulate import run as run_simulator

    return await run_simulator(args, settings)


def _scope_arguments(parser: argparse.ArgumentParser) -> None:
    for flag, what in (
        ("--province", "province"),
        ("--facility", "facility"),
        ("--station", "station id"),
    ):
        parser.add_argument(
            flag,
            action="append",
            metavar=what.upper().replace(" ", "_"),
            help=f"only this {what} (repeatable)",
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="quantrac",
        description="Ingest and alerting for automatic environmental monitoring stations.",
    )
    parser.add_argument(
        "--config",
        help="settings file (TOML); default ./quantrac.toml if "
        "present. QUANTRAC_* environment variables override it.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="run the ingest service (MQTT, file drop, /metrics)")
    run.add_argument("--duration", type=float, help="stop after this many seconds")
    run.set_defaults(handler=cmd_run)

    db = sub.add_parser("db", help="database schema")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    db_sub.add_parser("upgrade", help="apply pending migrations (idempotent)").set_defaults(
        handler=cmd_db_upgrade
    )

    stations = sub.add_parser("stations", help="station registry")
    st_sub = stations.add_subparsers(dest="stations_command", required=True, metavar="ACTION")
    check = st_sub.add_parser("check", help="validate a registry file")
    check.add_argument("file", nargs="?", help="default: the configured stations file")
    check.set_defaults(handler=cmd_stations_check)
    creds = st_sub.add_parser(
        "credentials",
        help="create or rotate broker accounts (one per station, and quantrac's own) and write "
        "the broker's files",
    )
    creds.add_argument("--dir", help="output folder (default: the broker_auth_dir setting)")
    creds.add_argument(
        "--rotate", action="append", metavar="ACCOUNT", help="new secret for this account"
    )
    creds.add_argument("--rotate-all", action="store_true", help="new secrets for every account")
    creds.add_argument("--format", choices=("text", "json"), default="text")
    creds.set_defaults(handler=cmd_stations_credentials)

    files = sub.add_parser("ingest-files", help="ingest Circular 10/2021 .txt files from DIR")
    files.add_argument("dir")
    files.add_argument(
        "--historical",
        action="store_true",
        help="backfill: stored and judged as usual, their alerts recorded as historical "
        "(never paged or escalated)",
    )
    files.set_defaults(handler=cmd_ingest_files)

    export = sub.add_parser("export", help="export stored data")
    ex_sub = export.add_subparsers(dest="export_command", required=True, metavar="WHAT")
    readings = ex_sub.add_parser("readings", help="stored readings of one station")
    readings.add_argument("--station", required=True)
    readings.add_argument(
        "--from",
        dest="start",
        required=True,
        type=_time_arg,
        help="ISO-8601 with offset, e.g. 2026-11-01T00:00+07:00",
    )
    readings.add_argument("--to", dest="end", required=True, type=_time_arg)
    readings.add_argument("--param", action="append", help="only this parameter (repeatable)")
    readings.add_argument(
        "--format",
        choices=("csv", "json"),
        default="csv",
        help="csv, or json (one JSON object per line)",
    )
    readings.add_argument("-o", "--output", help="file to write (default: standard output)")
    readings.set_defaults(handler=cmd_export_readings)

    demo = sub.add_parser(
        "demo",
        help="run a demo: local PostgreSQL and Mosquitto, simulated "
        "Bắc Giang fleet, ingest, live summary",
    )
    demo.add_argument("--duration", type=float, help="stop after this many seconds")
    demo.add_argument(
        "--workdir",
        help="folder for the local servers (default: a temporary folder, removed at exit)",
    )
    add_lang_arg(demo, "language of the banner and the summaries (default vi)")
    demo.set_defaults(handler=cmd_demo)

    simulate = sub.add_parser("simulate", help="publish simulated station traffic")
    from quantrac.cli.simulate import add_arguments

    add_arguments(simulate)
    simulate.set_defaults(handler=cmd_simulate)
    register_replay(sub)
    api = sub.add_parser("api", help="serve the HTTP API and the operator board alone")
    api.add_argument("--duration", type=float, help="stop after this many seconds")
    api.set_defaults(handler=cmd_api)
    users = sub.add_parser("users", help="people who use the API and the board")
    users_sub = users.add_subparsers(dest="users_command", required=True, metavar="ACTION")
    add = users_sub.add_parser(
        "add", help="add a user (password on stdin or QUANTRAC_NEW_PASSWORD)"
    )
    add.add_argument("username")
    add.add_argument("--role", required=True, choices=ROLES)
    add.add_argument("--name", help="display name")
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    _scope_arguments(add)
    add_lang_arg(add)
    add.set_defaults(handler=cmd_users)
    listing = users_sub.add_parser("list", help="list users")
    add_lang_arg(listing)
    listing.set_defaults(handler=cmd_users)
    passwd = users_sub.add_parser("passwd", help="set a new password (revokes the user's tokens)")
    passwd.add_argument("username")
    passwd.add_argument("--password-stdin", action="store_true", help="read it from stdin")
    add_lang_arg(passwd)
    passwd.set_defaults(handler=cmd_users)
    for action, text in (
        ("disable", "refuse the user's sign-ins and revoke its tokens"),
        ("enable", "allow the user to sign in again"),
        ("revoke", "revoke every token of the user (sign it out everywhere)"),
    ):
        one = users_sub.add_parser(action, help=text)
        one.add_argument("username")
        add_lang_arg(one)
        one.set_defaults(handler=cmd_users)
    scope = users_sub.add_parser("scope", help="limit a user to provinces, facilities, stations")
    scope.add_argument("username")
    scope.add_argument("--role", choices=ROLES, help="also change the role")
    scope.add_argument("--unrestricted", action="store_true", help="every station again")
    _scope_arguments(scope)
    add_lang_arg(scope)
    scope.set_defaults(handler=cmd_users)
    alerts = sub.add_parser(
        "alerts",
        help="run the alert engine alone: it follows what ingest stored (several workers "
        "split the stations)",
    )
    alerts.add_argument("--duration", type=float, help="stop after this many seconds")
    alerts.add_argument(
        "--parent",
        type=int,
        metavar="PID",
        help="stop when this process is gone (`quantrac run` starts its alert workers so)",
    )
    alerts.set_defaults(handler=cmd_alerts)
    register_aqi(sub)
    register_regulations(sub)
    register_check(sub)
    register_reports(sub)
    register_evidence(sub)
    register_forward(sub)
    register_maintenance(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = load_settings(config_file=Path(args.config) if args.config else None)
    except SettingsError as exc:
        print(f"quantrac: invalid setting: {exc}", file=sys.stderr)
        return 2
    configure_logging(settings.log_level, settings.log_format)
    handler = args.handler
    try:
        if asyncio.iscoroutinefunction(handler):
            return int(asyncio.run(handler(settings, args)))
        return int(handler(settings, args))
    except RegistryError as exc:
        print(f"quantrac: invalid station registry:\n{exc}", file=sys.stderr)
        return 2
    except (psycopg.OperationalError, RuntimeError) as exc:
        print(f"quantrac: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
