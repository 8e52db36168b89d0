"""Sign-in hardening, measured: wrong-password rate, known vs unknown user timing, and /healthz
latency while clients hammer /login.

    python bench/login.py [--label after] [--attempts 200] [--clients 8]

Starts a private PostgreSQL, and the HTTP API (uvicorn, as `quantrac api` serves it) on its own
event loop in a thread of this process; the clients run on the main thread's loop. Measures:

1. rate: one client sends ``--attempts`` wrong passwords for one account, one after the other:
   how many got through to a password check (401) and how many were refused (429), and how fast;
2. timing: median time of a failed sign-in for an existing user and for an unknown name (the
   throttle is switched off for this, so that every attempt reaches the password check);
3. health: /healthz latency (p50, p95) idle, then while ``--clients`` clients send wrong
   passwords as fast as they can (throttle off: the worst case for the event loop);
4. ingest: with ``--ingest``, the same but `quantrac run` itself (ingest and API on one event
   loop, a private Mosquitto): how long ``--messages`` station messages take to be stored, idle
   and while the clients send wrong passwords.

It imports quantrac from the working directory, so running it from an older checkout measures
that version (how docs/benchmarks.md got its "before" figures). Results go to
bench/results/login-<label>-<timestamp>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psycopg

sys.path.insert(0, str(Path.cwd()))

from bench.scratch import scratch_folder
from quantrac.api.app import ApiService, FileRegistry, build_api
from quantrac.api.users import add_user
from quantrac.core.catalog import load_catalog
from quantrac.core.settings import default_config_dir, load_settings
from quantrac.localservers import MosquittoServer, PostgresServer, free_port
from quantrac.web import WebServer

PASSWORD = "bench-password-1"


class ServerThread:
    """The API on its own event loop; with ``mqtt_url``, all of `quantrac run` (ingest and the
    API sharing that loop)."""

    def __init__(self, database_url: str, mqtt_url: str | None = None):
        self.database_url = database_url
        self.mqtt_url = mqtt_url
        self.ready = threading.Event()
        self.port = 0
        self.context: Any = None
        self._stop: asyncio.Event | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.thread = threading.Thread(target=lambda: asyncio.run(self._main()), daemon=True)

    async def _main(self) -> None:
        config = default_config_dir()
        settings = load_settings(
            {},
            database_url=self.database_url,
            mqtt_url="mqtt://127.0.0.1:1",  # no broker: the event hub just logs it
            http_port=0,
            log_level="ERROR",
        )
        if self.mqtt_url is not None:
            await self._run_app(settings)
            return
        catalog = load_catalog(config / "parameters.yaml")
        service = ApiService(settings, catalog, FileRegistry(settings.stations_path, catalog))
        self.context = await service.start()
        async with await psycopg.AsyncConnection.connect(self.database_url, autocommit=True) as c:
            await add_user(c, "known", "operator", PASSWORD)
        web = WebServer(build_api(self.context, health=lambda: {"status": "ok"}), "127.0.0.1", 0)
        await web.start()
        self.port = web.port
        await self._serve()
        await web.stop()
        await service.stop()

    async def _run_app(self, settings: Any) -> None:
        import dataclasses

        from quantrac.app import App

        port = free_port()
        app = App(
            dataclasses.replace(
                settings, mqtt_url=self.mqtt_url, http_port=port, alerts_enabled=False
            )
        )
        await app.start()
        assert app.api is not None
        self.context = app.api.context
        async with await psycopg.AsyncConnection.connect(self.database_url, autocommit=True) as c:
            await add_user(c, "known", "operator", PASSWORD)
        self.port = port
        await self._serve()
        await app.stop()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self.ready.set()
        await self._stop.wait()

    def throttle(self, on: bool) -> bool:
        """Switch the sign-in throttle on or off; False if this version has none."""
        if not hasattr(self.context, "throttle"):
            return False
        from quantrac.api.security import LoginThrottle

        limit = None if on else 10**9
        self.context.throttle = LoginThrottle() if limit is None else LoginThrottle(limit, limit)
        return True

    def start(self) -> ServerThread:
        self.thread.start()
        if not self.ready.wait(120):
            raise RuntimeError("the API did not start")
        return self

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self.thread.join(30)


async def wrong(client: httpx.AsyncClient, name: str) -> tuple[int, float]:
    t = time.perf_counter()
    r = await client.post("/api/v1/login", json={"username": name, "password": "wrong-one-1"})
    return r.status_code, time.perf_counter() - t


async def rate(client: httpx.AsyncClient, attempts: int) -> dict[str, Any]:
    started = time.perf_counter()
    codes: dict[str, int] = {}
    for _ in range(attempts):
        code, _ = await wrong(client, "known")
        codes[str(code)] = codes.get(str(code), 0) + 1
    elapsed = time.perf_counter() - started
    return {
        "attempts": attempts,
        "seconds": round(elapsed, 2),
        "per_s": round(attempts / elapsed, 1),
        "status_codes": codes,
        "password_checks": codes.get("401", 0),
    }


async def timing(client: httpx.AsyncClient, rounds: int = 40) -> dict[str, Any]:
    known, unknown = [], []
    for i in range(rounds):
        known.append((await wrong(client, "known"))[1])
        unknown.append((await wrong(client, f"nobody-{i}"))[1])
    k, u = statistics.median(known) * 1000, statistics.median(unknown) * 1000
    return {"known_ms": round(k, 1), "unknown_ms": round(u, 1), "ratio": round(k / u, 2)}


async def healthz(client: httpx.AsyncClient, n: int = 60) -> dict[str, float]:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        await client.get("/healthz")
        times.append((time.perf_counter() - t) * 1000)
        await asyncio.sleep(0.02)
    times.sort()
    return {"p50_ms": round(times[len(times) // 2], 1), "p95_ms": round(times[int(n * 0.95)], 1)}


async def under_load(base: str, clients: int) -> dict[str, Any]:
    stop = asyncio.Event()
    sent = [0]

    async def hammer() -> None:
        async with httpx.AsyncClient(base_url=base, timeout=60) as c:
            while not stop.is_set():
                await wrong(c, "known")
                sent[0] += 1

    tasks = [asyncio.create_task(hammer()) for _ in range(clients)]
    await asyncio.sleep(1.0)
    async with httpx.AsyncClient(base_url=base, timeout=60) as c:
        t = time.perf_counter()
        result: dict[str, Any] = dict(await healthz(c))
        result["hammer_logins_per_s"] = round(sent[0] / (time.perf_counter() - t + 1.0), 1)
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    return result


async def store(mqtt_url: str, database_url: str, messages: int, shift_days: int) -> float:
    """Seconds from the first publish until ``messages`` station messages are stored."""
    from quantrac.core.contract import data_topic
    from quantrac.core.registry import load_registry
    from quantrac.core.settings import parse_mqtt_url
    from quantrac.simulator.encode import encode_message
    from quantrac.simulator.publisher import Publisher

    config = default_config_dir()
    registry = load_registry(config / "stations.yaml", load_catalog(config / "parameters.yaml"))
    stations = list(registry.stations.values())
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        row = await (await conn.execute("SELECT count(*) FROM readings")).fetchone()
        before = row[0] if row else 0
    base = datetime.now(UTC).replace(second=0, microsecond=0) - timedelta(days=shift_days)
    payloads = []
    for i in range(messages):
        station = stations[i % len(stations)]
        moment = base - timedelta(seconds=station.cadence_s * (i // len(stations) + 1))
        payloads.append((station, encode_message(station, moment, seed=i)))
    expected = before + sum(len(s.parameters) for s, _ in payloads)
    publisher = Publisher(parse_mqtt_url(mqtt_url))
    await publisher.connect()
    started = time.perf_counter()
    for station, payload in payloads:
        await publisher.publish(data_topic(station.id), payload)
    await publisher.close(timeout=60)
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        while time.perf_counter() - started < 300:
            row = await (await conn.execute("SELECT count(*) FROM readings")).fetchone()
            if row and row[0] >= expected:
                break
            await asyncio.sleep(0.05)
    return time.perf_counter() - started


async def ingest_under_load(
    base: str, mqtt_url: str, database_url: str, messages: int, clients: int
) -> dict[str, Any]:
    idle = await store(mqtt_url, database_url, messages, shift_days=1)
    stop = asyncio.Event()

    async def hammer() -> None:
        async with httpx.AsyncClient(base_url=base, timeout=60) as c:
            while not stop.is_set():
                await wrong(c, "known")

    tasks = [asyncio.create_task(hammer()) for _ in range(clients)]
    await asyncio.sleep(1.0)
    stormy = await store(mqtt_url, database_url, messages, shift_days=20)
    stop.set()
    await asyncio.gather(*tasks, return_exceptions=True)
    return {
        "messages": messages,
        "idle_s": round(idle, 2),
        "during_login_storm_s": round(stormy, 2),
        "slowdown": round(stormy / idle, 2),
    }


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--label", default="local")
    parser.add_argument("--attempts", type=int, default=200)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--ingest", action="store_true", help="also measure ingest (step 4)")
    parser.add_argument("--messages", type=int, default=3000)
    args = parser.parse_args()
    root = scratch_folder("quantrac-bench-login-")
    postgres = PostgresServer(root / "pg", durable=False).start()
    mosquitto = MosquittoServer(root / "mq", persistence=False).start() if args.ingest else None
    server = ServerThread(postgres.url, mosquitto.url if mosquitto else None).start()
    base = f"http://127.0.0.1:{server.port}"
    results: dict[str, Any] = {
        "label": args.label,
        "at": datetime.now(UTC).isoformat(),
        "machine": f"{platform.machine()}, {platform.python_version()}",
    }
    try:
        async with httpx.AsyncClient(base_url=base, timeout=60) as client:
            results["has_throttle"] = server.throttle(True)
            results["rate"] = await rate(client, args.attempts)
            server.throttle(False)
            results["timing"] = await timing(client)
            results["healthz_idle"] = await healthz(client)
        results["healthz_under_login_storm"] = await under_load(base, args.clients)
        if mosquitto is not None:
            results["ingest"] = await ingest_under_load(
                base, mosquitto.url, postgres.url, args.messages, args.clients
            )
    finally:
        server.stop()
        if mosquitto is not None:
            mosquitto.stop()
        postgres.stop("immediate")
    print(json.dumps(results, indent=2))
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    (out / f"login-{args.label}-{stamp}.json").write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
