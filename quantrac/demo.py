"""`quantrac demo`: everything on one machine, nothing to configure.

With no database or broker configured it starts a private PostgreSQL (TimescaleDB when the
extension is installed) and Mosquitto, runs ingest and the HTTP endpoints, and has the simulator
play a fleet shaped like Bắc Giang city's: six hours of history replayed fast, then live traffic,
plus a misconfigured station whose rejections show what vendors see on their ack topic.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import os
import shutil
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import yaml

from quantrac.alerts import partitions as parts
from quantrac.alerts import store
from quantrac.alerts.service import AlertService
from quantrac.api.users import add_user, list_users
from quantrac.app import App, run_until_signalled
from quantrac.core.contract import ack_topic, data_topic
from quantrac.core.i18n import DEFAULT_LANGUAGE, format_number, format_time, translate, zone_text
from quantrac.core.mqtt import connect, make_client
from quantrac.core.settings import Settings, default_config_dir
from quantrac.core.tasks import cancel_and_wait
from quantrac.ingest import stream
from quantrac.ingest.schema import station_summaries
from quantrac.ingest.service import IngestService
from quantrac.localservers import MosquittoServer, PostgresServer, port_or_free
from quantrac.simulator.publisher import Publisher
from quantrac.simulator.run import DEFAULT_SPEED_BACKLOG, simulate, simulate_scenario_file
from quantrac.simulator.scenarios import load_scenarios

SUMMARY_EVERY_S = 10.0
MISCONFIGURED_STATION = "BG_WW_CITY"


async def _print_summary(settings: Settings, service: IngestService, lang: str) -> None:
    async with await psycopg.AsyncConnection.connect(settings.database_url or "") as conn:
        rows = await station_summaries(conn)
        alerts = await _open_alerts(conn)

    def t(key: str, **params: object) -> str:
        return translate(key, lang, **params)

    def n(value: int) -> str:
        return format_number(value, lang, 0)

    header = [t(f"demo.column.{c}") for c in ("station", "kind", "readings", "newest", "rejected")]
    table = [
        [
            row.station_id,
            t(f"kind.{row.kind}"),
            n(row.readings),
            format_time(row.newest) if row.newest else "–",
            n(row.rejected),
        ]
        for row in rows
    ]
    widths = [max(len(line[i]) for line in [header, *table]) for i in range(len(header))]
    right = {2, 4}  # counts

    def aligned(line: list[str]) -> str:
        cells = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(line, widths, strict=True))
        ]
        return "  ".join(cells).rstrip()

    now = format_time(datetime.now(UTC), seconds=True)
    lines = [f"\n── {t('demo.summary.title', time=now, zone=zone_text(lang=lang))} ──"]
    lines += [aligned(header)] + [aligned(line) for line in table]
    pending = service.pipeline.pending if service.pipeline else 0
    lines.append(
        t(
            "demo.total",
            readings=n(sum(r.readings for r in rows)),
            rejections=n(sum(r.rejected for r in rows)),
            pending=n(pending),
        )
    )
    if alerts:
        named = ", ".join(f"{k} {t(f'alert.kind.{kind}')} ({kind})" for kind, k in alerts)
        lines.append(t("demo.open_alerts", alerts=named))
        lines.append("  " + t("demo.alerts_live"))
    print("\n".join(lines), flush=True)


async def _open_alerts(conn: psycopg.AsyncConnection) -> list[tuple[str, int]]:
    exists = await (await conn.execute("SELECT to_regclass('alerts') IS NOT NULL")).fetchone()
    if not exists or not exists[0]:
        return []
    by_kind: dict[str, int] = {}
    for (kind, _severity), n in (await store.open_alert_counts(conn)).items():
        by_kind[kind] = by_kind.get(kind, 0) + n
    return sorted(by_kind.items())


# Demo accounts only: the demo database is thrown away when the demo stops.
DEMO_USERS = (
    ("operator", "operator", "demo-operator"),
    ("inspector", "inspector", "demo-inspector"),
    ("admin", "admin", "demo-admin"),
)


async def _add_demo_users(settings: Settings) -> None:
    async with await psycopg.AsyncConnection.connect(
        settings.database_url or "", autocommit=True
    ) as conn:
        known = {u.username for u in await list_users(conn)}
        for name, role, password in DEMO_USERS:
            if name not in known:
                await add_user(conn, name, role, password, f"Demo {role}")


def _demo_broker_accounts(settings: Settings, folder: Path) -> dict[str, str]:
    """Accounts for every station of the registry and for quantrac: their secrets, by name."""
    from quantrac import broker_auth
    from quantrac.core.catalog import load_catalog
    from quantrac.core.registry import load_registry

    registry = load_registry(settings.stations_path, load_catalog(settings.catalog_path))
    services = broker_auth.service_accounts(settings.mqtt_share_group, settings.alerts_share_group)
    accounts, issued, _ = broker_auth.update_accounts({}, registry.stations, services)
    broker_auth.write_accounts(folder, accounts, services)
    return {item.account: item.secret for item in issued}


def _report_failure(task: asyncio.Task[object]) -> None:
    if not task.cancelled() and task.exception() is not None:
        print(f"quantrac demo: a part of the demo stopped: {task.exception()!r}", file=sys.stderr)


def _demo_alerts_file(settings: Settings, root: Path) -> Path:
    """The shipped alert settings, with data loss after one cadence (5 min) instead of three,
    so that the demo's silent station shows within minutes."""
    data = yaml.safe_load(settings.alerts_path.read_text(encoding="utf-8"))
    data.setdefault("rules", {}).setdefault("data_loss", {})["after_cadences"] = 1
    path = root / "demo-alerts.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


async def _until_stored(service: IngestService, timeout: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while service.pipeline is not None and service.pipeline.pending and loop.time() < deadline:
        await asyncio.sleep(0.2)


_SCENARIOS = default_config_dir() / "scenarios"
_NEVER_S = 10.0**9  # no clock checks while the history is judged


async def _until_judged(settings: Settings, timeout: float = 60.0) -> None:
    """Wait until the alert cursors have judged every committed batch."""
    assert settings.database_url
    names = parts.cursor_names(settings.alerts_partitions)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    async with await psycopg.AsyncConnection.connect(
        settings.database_url, autocommit=True
    ) as conn:
        while loop.time() < deadline:
            if stream.worst_lag(await stream.lag(conn), names)[0] == 0:
                return
            await asyncio.sleep(0.2)


async def run_demo(
    settings: Settings, duration: float | None, workdir: str | None, lang: str = DEFAULT_LANGUAGE
) -> int:
    root = Path(workdir) if workdir else Path(tempfile.mkdtemp(prefix="quantrac-demo-"))
    postgres = mosquitto = None
    try:
        changes: dict[str, object] = {"http_port": port_or_free(settings.http_port or 8080)}
        if not settings.database_url:
            postgres = PostgresServer(root / "postgres", timescale=True).start()
            changes["database_url"] = postgres.url
        station_secrets: dict[str, str] | None = None
        if "QUANTRAC_MQTT_URL" not in os.environ and settings.mqtt_url == Settings().mqtt_url:
            # As in production: no anonymous access, each simulated station signs in with its
            # own account, quantrac with its service account.
            secrets = _demo_broker_accounts(settings, root / "broker-auth")
            mosquitto = MosquittoServer(root / "mosquitto", auth_dir=root / "broker-auth").start()
            changes["mqtt_url"] = mosquitto.url
            changes["mqtt_username"] = "quantrac-ingest"
            changes["mqtt_password"] = secrets.pop("quantrac-ingest")
            station_secrets = secrets
        changes["alerts_file"] = _demo_alerts_file(settings, root)
        settings = settings.model_copy(update=changes)
        # quantrac run's own engine is off: the demo starts one to judge the replayed history
        # as it is stored, then the live one (see history_then_live).
        app = App(settings.model_copy(update={"alerts_enabled": False}))
        tasks: list[asyncio.Task[object]] = []
        engines: list[AlertService] = []

        async def history_then_live() -> None:
            registry = app.service.current_registry()
            endpoint = settings.mqtt
            # Six hours of history at 720x (about 30 s), then stop: the live fleet takes over.
            history = sum(
                int(DEFAULT_SPEED_BACKLOG.total_seconds()) // s.cadence_s
                for s in registry.stations.values()
            )
            # The history is judged as it is stored, from the committed stream, so the board
            # opens with the alerts its hours hold (the COD exceedance at Song Khê). Without
            # clock checks: six hours replayed in 30 s must not read as stations gone silent.
            judge = AlertService(settings.model_copy(update={"alerts_tick_s": _NEVER_S}))
            judge.load_configuration(registry)
            await judge.start()
            try:
                await simulate(
                    endpoint,
                    registry,
                    seed=2026,
                    speed=720.0,
                    messages=history,
                    client_id="quantrac-demo-history",
                    credentials=station_secrets,
                    scenarios=load_scenarios(_SCENARIOS / "demo-history.yaml", registry),
                )
                await _until_stored(app.service)
                await _until_judged(settings)
            finally:
                await judge.stop()
            alerts = AlertService(settings, metrics_registry=app.service.metrics.registry)
            alerts.load_configuration(registry)
            app.service.registry_listeners.append(alerts.set_registry)
            await alerts.start()
            engines.append(alerts)
            # The live fleet plays config/scenarios/demo.yaml: the exceedance goes on, an air
            # station falls silent and a stack reports a fault within the first minutes.
            await simulate_scenario_file(
                endpoint,
                registry,
                _SCENARIOS / "demo.yaml",
                seed=2026,
                interval=10,
                client_id="quantrac-demo-live",
                credentials=station_secrets,
            )

        async def start() -> None:
            await app.start()
            await _add_demo_users(settings)
            _print_banner(settings, app.service, lang)
            for coro in (
                history_then_live(),
                _vendor_with_mistakes(settings, station_secrets, lang),
                _summaries(settings, app.service, lang),
            ):
                task = asyncio.create_task(coro)
                task.add_done_callback(_report_failure)
                tasks.append(task)

        async def stop() -> None:
            await cancel_and_wait(tasks)
            await app.stop()
            for engine in engines:
                await engine.stop()
            with contextlib.suppress(psycopg.Error):
                await _print_summary(settings, app.service, lang)

        await run_until_signalled(start, stop, duration)
        return 0
    finally:
        if mosquitto:
            mosquitto.stop()
        if postgres:
            postgres.stop()
        if not workdir:
            shutil.rmtree(root, ignore_errors=True)


def _print_banner(settings: Settings, service: IngestService, lang: str) -> None:
    def t(key: str, **params: object) -> str:
        return translate(key, lang, **params)

    base = f"http://{settings.http_host}:{settings.http_port}"
    url = settings.safe_database_url
    users = ", ".join(f"{name} / {password} ({role})" for name, role, password in DEMO_USERS)
    report = (
        f"QUANTRAC_DATABASE_URL='{url}' .venv/bin/quantrac report exceedances"
        " --station BG_WW_SONGKHE --from <today>T00:00+07:00 --to <tomorrow>T00:00+07:00"
        " --format pdf -o songkhe.pdf"
    )
    rows = [
        ("storage", t("demo.storage", backend=service.backend, url=url)),
        ("broker", f"{settings.mqtt_url}   ({t('demo.broker')})"),
        ("board", f"{base}/board/   ({t('demo.board')})"),
        ("api", f"{base}/docs   (OpenAPI: {base}/openapi.json)"),
        ("sign_in", users),
        ("metrics", f"{base}/metrics"),
        ("health", f"{base}/healthz"),
        ("reports", f"{t('demo.reports')}\n{report}"),
    ]
    labels = {key: t(f"demo.label.{key}") for key, _ in rows}
    width = max(len(label) for label in labels.values()) + 2
    lines = ["", t("demo.title", stations=len(service.current_registry().stations))]
    for key, text in rows:
        first, *more = text.split("\n")
        lines.append(f"  {labels[key]:<{width}}{first}")
        lines += [f"  {'':<{width}}{line}" for line in more]
    lines += [f"  {t('demo.story')}", ""]
    print("\n".join(lines), flush=True)


async def _summaries(settings: Settings, service: IngestService, lang: str) -> None:
    while True:
        await asyncio.sleep(SUMMARY_EVERY_S)
        with contextlib.suppress(psycopg.Error):
            await _print_summary(settings, service, lang)


async def _vendor_with_mistakes(
    settings: Settings, secrets: dict[str, str] | None, lang: str
) -> None:
    """Every 30 s a station sends a wrong unit and an undeclared parameter; print its ack."""
    endpoint = settings.mqtt
    if secrets is not None:
        # The station's own account: it may publish its data and read its acks, nothing else.
        endpoint = dataclasses.replace(
            endpoint, username=MISCONFIGURED_STATION, password=secrets[MISCONFIGURED_STATION]
        )
    listener = make_client("quantrac-demo-vendor-ack", endpoint)

    def on_message(client: object, topic: str, payload: bytes, qos: int, props: object) -> int:
        body = json.loads(payload)
        problems = "; ".join(f"{p['field']}: {p['rule']} ({p['value']})" for p in body["problems"])
        said = translate(
            "demo.ack",
            lang,
            station=body["station"],
            status=body["status"],
            accepted=body["accepted"],
            problems=problems,
        )
        print(
            said,
            file=sys.stderr,
            flush=True,
        )
        return 0

    listener.on_message = on_message
    await connect(listener, endpoint)
    listener.subscribe(ack_topic(MISCONFIGURED_STATION), qos=1)
    publisher = Publisher(endpoint, client_id="quantrac-demo-vendor")
    await publisher.connect()
    try:
        while True:
            moment = datetime.now(UTC).replace(microsecond=0)
            body = {
                "station": MISCONFIGURED_STATION,
                "time": moment.isoformat(),
                "readings": [
                    {"param": "NH4", "value": 4.2, "unit": "mg/L", "status": "00"},
                    {"param": "COD", "value": 61, "unit": "mg/L", "status": "00"},
                    {"param": "TSS", "value": 18, "unit": "mg/m3", "status": "00"},
                ],
            }
            await publisher.publish(data_topic(MISCONFIGURED_STATION), json.dumps(body).encode())
            await asyncio.sleep(30)
    finally:
        await publisher.close()
        await listener.disconnect()
