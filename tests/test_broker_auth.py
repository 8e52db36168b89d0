"""Broker accounts from the registry, against a real Mosquitto configured as shipped: each
station publishes only its own data topic and reads only its own acks; only quantrac's accounts
join its share groups and publish alerts; no account, a wrong or a rotated-away secret is
refused."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from gmqtt import Client, MQTTConnectError

from quantrac import broker_auth
from quantrac.cli.main import main
from quantrac.ingest.service import IngestService
from quantrac.localservers import MosquittoServer, find_dynamic_security_plugin, find_mosquitto
from tests.conftest import fetch, wait_until

SERVICES = broker_auth.service_accounts("quantrac-ingest", "quantrac-alerts")
NOT_AUTHORIZED = 135  # MQTT 5 reason code, in CONNACK and SUBACK


def test_accounts_new_kept_rotated_and_removed() -> None:
    accounts, issued, removed = broker_auth.update_accounts({}, ["X", "Y"], SERVICES)
    names = {i.account for i in issued}
    assert names == {"X", "Y", "quantrac-ingest", "quantrac-alerts", "quantrac-api"}
    assert removed == [] and all(i.reason == "new" for i in issued)
    again, issued2, _ = broker_auth.update_accounts(accounts, ["X", "Y"], SERVICES)
    assert issued2 == [] and again == accounts
    rotated, issued3, removed3 = broker_auth.update_accounts(
        accounts, ["X", "Z"], SERVICES, rotate=["X"]
    )
    assert {(i.account, i.reason) for i in issued3} == {("X", "rotated"), ("Z", "new")}
    assert removed3 == ["Y"] and "Y" not in rotated
    assert rotated["X"].mosquitto != accounts["X"].mosquitto
    assert rotated["quantrac-api"] == accounts["quantrac-api"]


@pytest.mark.parametrize(
    ("station", "message"),
    [("a/b", "cannot be a broker user name"), ("quantrac-ingest", "are quantrac's")],
)
def test_station_ids_that_cannot_be_accounts(station: str, message: str) -> None:
    with pytest.raises(broker_auth.CredentialsError, match=message):
        broker_auth.update_accounts({}, [station], SERVICES)
    with pytest.raises(broker_auth.CredentialsError, match="no such station"):
        broker_auth.update_accounts({}, ["X"], SERVICES, rotate=["NOPE"])


def test_written_files_hold_no_secret(tmp_path: Path) -> None:
    accounts, issued, _ = broker_auth.update_accounts({}, ["X"], SERVICES)
    broker_auth.write_accounts(tmp_path, accounts, SERVICES)
    text = "".join(p.read_text() for p in tmp_path.iterdir())
    assert not any(i.secret in text for i in issued)
    acl = (tmp_path / "acl").read_text()
    assert "pattern write stations/%u/data" in acl and "pattern read stations/%u/ack" in acl
    assert "topic read $share/quantrac-ingest/stations/+/data" in acl
    emqx = (tmp_path / "emqx-acl.conf").read_text()
    assert '{allow, all, publish, ["stations/${username}/data"]}.' in emqx
    assert emqx.rstrip().endswith("{deny, all}.")
    users = (tmp_path / "emqx-users.csv").read_text().splitlines()
    assert users[0] == "user_id,password_hash,salt,is_superuser" and len(users) == 5
    secret = next(i.secret for i in issued if i.account == "X")
    row = next(line.split(",") for line in users if line.startswith("X,"))
    assert broker_auth.emqx_hash(secret, row[2])[0] == row[1]
    assert broker_auth.load_accounts(tmp_path) == accounts


needs_broker = pytest.mark.skipif(
    find_mosquitto() is None or find_dynamic_security_plugin() is None,
    reason="needs mosquitto and its dynamic-security plugin",
)


class Broker:
    def __init__(self, root: Path, stations: list[str]):
        self.auth = root / "auth"
        accounts, issued, _ = broker_auth.update_accounts({}, stations, SERVICES)
        broker_auth.write_accounts(self.auth, accounts, SERVICES)
        self.secrets = {i.account: i.secret for i in issued}
        self.server = MosquittoServer(root / "mq", persistence=False, auth_dir=self.auth).start()

    async def client(self, user: str | None, secret: str | None = None) -> Client:
        client = Client(f"t-{uuid.uuid4().hex[:8]}")
        client.messages = []  # type: ignore[attr-defined]
        client.subacks = []  # type: ignore[attr-defined]

        def on_message(c: Client, topic: str, payload: bytes, qos: int, props: Any) -> int:
            c.messages.append((topic, payload))  # type: ignore[attr-defined]
            return 0

        def on_subscribe(c: Client, mid: int, qos: tuple[int, ...], props: Any) -> None:
            c.subacks.extend(qos)  # type: ignore[attr-defined]

        client.on_message = on_message
        client.on_subscribe = on_subscribe
        if user is not None:
            client.set_auth_credentials(user, secret or self.secrets[user])
        try:
            await client.connect("127.0.0.1", self.server.port)
        except BaseException:
            # A refused CONNACK leaves gmqtt retrying in the background.
            await client.disconnect()
            raise
        return client


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    b = Broker(tmp_path, ["X", "Y"])
    yield b
    b.server.stop()


async def _refused(broker: Broker, user: str | None, secret: str | None = None) -> bool:
    try:
        client = await broker.client(user, secret)
    except MQTTConnectError as exc:
        return NOT_AUTHORIZED in exc.args or "135" in str(exc)
    await client.disconnect()
    return False


@needs_broker
@pytest.mark.integration
async def test_a_station_reaches_only_its_own_topics(broker: Broker) -> None:
    ingest = await broker.client("quantrac-ingest")
    ingest.subscribe("$share/quantrac-ingest/stations/+/data", qos=1)
    alerts_reader = await broker.client("quantrac-api")
    alerts_reader.subscribe("alerts/#", qos=1)
    x, y = await broker.client("X"), await broker.client("Y")
    y.subscribe("$share/quantrac-ingest/stations/+/data", qos=1)
    y.subscribe("stations/X/ack", qos=1)
    y.subscribe("stations/+/data", qos=1)
    y.subscribe("stations/Y/ack", qos=1)
    await wait_until(lambda: _async(len(y.subacks) == 4 and len(ingest.subacks) == 1), 5)
    # Y may not join quantrac's share group, read X's acks nor read others' data.
    assert y.subacks == [NOT_AUTHORIZED, NOT_AUTHORIZED, NOT_AUTHORIZED, 1]
    for n in range(6):
        x.publish("stations/X/data", f"x{n}", qos=1)
    y.publish("stations/X/data", b"forged by Y", qos=1)
    y.publish("alerts/X/exceedance", b'{"event": "opened", "severity": "critical"}', qos=1)
    ingest.publish("stations/X/ack", b"ack for X", qos=1)
    ingest.publish("stations/Y/ack", b"ack for Y", qos=1)
    await wait_until(lambda: _async(len(ingest.messages) >= 6 and y.messages), 5)
    await asyncio.sleep(0.3)
    # Every message of X reached ingest (none lost to Y); Y's forgery and fake alert did not.
    assert ingest.messages == [("stations/X/data", f"x{n}".encode()) for n in range(6)]
    assert y.messages == [("stations/Y/ack", b"ack for Y")]
    assert alerts_reader.messages == []
    for client in (ingest, alerts_reader, x, y):
        await client.disconnect()


async def _async(value: Any) -> Any:
    return value


@needs_broker
@pytest.mark.integration
async def test_no_account_wrong_secret_and_rotated_secret_are_refused(
    broker: Broker, tmp_path: Path
) -> None:
    assert await _refused(broker, None)
    assert await _refused(broker, "X", "not-the-secret")
    assert await _refused(broker, "NOBODY", "whatever")
    old = broker.secrets["X"]
    assert not await _refused(broker, "X", old)
    accounts, issued, _ = broker_auth.update_accounts(
        broker_auth.load_accounts(broker.auth), ["X", "Y"], SERVICES, rotate=["X"]
    )
    broker_auth.write_accounts(broker.auth, accounts, SERVICES)
    broker.server.restart()  # the plugin reads its file at start
    [new] = [i.secret for i in issued]
    assert await _refused(broker, "X", old)
    assert not await _refused(broker, "X", new)
    assert not await _refused(broker, "Y")  # the others are untouched


@needs_broker
@pytest.mark.integration
async def test_ingest_signed_in_refuses_a_payload_naming_another_station(
    broker: Broker, make_settings: Any, database_url: str
) -> None:
    settings = make_settings(
        mqtt_url=f"mqtt://127.0.0.1:{broker.server.port}",
        mqtt_username="quantrac-ingest",
        mqtt_password=broker.secrets["quantrac-ingest"],
        mqtt_share_group="quantrac-ingest",
        alerts_enabled=False,
    )
    accounts, issued, _ = broker_auth.update_accounts(
        broker_auth.load_accounts(broker.auth), ["X", "Y", "AIR1", "WW1"], SERVICES
    )
    broker_auth.write_accounts(broker.auth, accounts, SERVICES)
    broker.server.restart()
    secrets = {**broker.secrets, **{i.account: i.secret for i in issued}}
    service = IngestService(settings)
    service.load_configuration()
    await service.start()
    try:
        ww1 = await broker.client("WW1", secrets["WW1"])
        ww1.subscribe("stations/WW1/ack", qos=1)
        await asyncio.sleep(0.2)
        now = datetime.now(UTC).replace(microsecond=0).isoformat()
        body = {
            "station": "AIR1",
            "time": now,
            "readings": [{"param": "PM10", "value": 40, "unit": "µg/m3", "status": "00"}],
        }
        ww1.publish("stations/WW1/data", json.dumps(body), qos=1)
        await wait_until(lambda: _async(ww1.messages), 10)
        ack = json.loads(ww1.messages[0][1])
        assert ack["problems"][0]["rule"] == "station_mismatch"
        assert await fetch(database_url, "SELECT count(*) FROM readings") == [(0,)]
        await ww1.disconnect()
    finally:
        await service.stop()


@needs_broker
def test_the_command_shows_secrets_once(
    tmp_path: Path, stations_file: Path, capsys: Any, monkeypatch: Any
) -> None:
    env_dir = tmp_path / "auth"
    args = ["stations", "credentials", "--dir", str(env_dir), "--format", "json"]
    monkeypatch.setenv("QUANTRAC_STATIONS_FILE", str(stations_file))
    assert main(args) == 0
    first = json.loads(capsys.readouterr().out)
    assert {i["account"] for i in first["issued"]} >= {"AIR1", "WW1", "quantrac-ingest"}
    assert main(args) == 0
    assert json.loads(capsys.readouterr().out) == {"issued": [], "removed": []}
    assert main([*args, "--rotate", "WW1"]) == 0
    [rotated] = json.loads(capsys.readouterr().out)["issued"]
    assert rotated["account"] == "WW1" and rotated["reason"] == "rotated"
    assert main([*args, "--rotate", "NOPE"]) == 2
    stored = (env_dir / "accounts.json").read_text()
    assert all(i["secret"] not in stored for i in first["issued"])


@needs_broker
@pytest.mark.integration
async def test_the_shipped_configuration_as_written(tmp_path: Path) -> None:
    """config/mosquitto/mosquitto.conf itself, with only its container paths and ports moved
    here: stations over TLS on the second listener, quantrac in plain MQTT on the first, nobody
    without an account."""
    import shutil
    import ssl
    import subprocess

    from quantrac.core.settings import default_config_dir
    from quantrac.localservers import free_port, wait_for_port
    from tests.test_mqtt_tls import make_certificates

    if shutil.which("openssl") is None:
        pytest.skip("needs openssl")
    certs = tmp_path / "certs"
    certs.mkdir()
    ca, cert, key = make_certificates(certs)
    key.chmod(0o644)
    cert.rename(certs / "server.pem")
    key.rename(certs / "server.key")
    auth = tmp_path / "auth"
    accounts, issued, _ = broker_auth.update_accounts({}, ["X"], SERVICES)
    broker_auth.write_accounts(auth, accounts, SERVICES)
    secrets = {i.account: i.secret for i in issued}
    plain, tls = free_port(), free_port()
    text = (default_config_dir() / "mosquitto" / "mosquitto.conf").read_text()
    text = (
        text.replace("listener 1883 0.0.0.0", f"listener {plain} 127.0.0.1")
        .replace("listener 8883 0.0.0.0", f"listener {tls} 127.0.0.1")
        .replace("/mosquitto/certs/", f"{certs}/")
        .replace("/mosquitto/auth/", f"{auth}/")
        .replace("/usr/lib/mosquitto_dynamic_security.so", str(find_dynamic_security_plugin()))
        .replace("/mosquitto/data/", f"{tmp_path}/")
        .replace("log_dest stdout", f"log_dest file {tmp_path}/mosquitto.log")
    )
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(text + ("user root\n" if os.geteuid() == 0 else ""))
    process = subprocess.Popen([str(find_mosquitto()), "-c", str(conf)], stderr=subprocess.PIPE)
    try:
        wait_for_port(tls, 15, lambda: process.poll() is None)
        ingest = Client("shipped-ingest")
        ingest.set_auth_credentials("quantrac-ingest", secrets["quantrac-ingest"])
        got: list[bytes] = []
        ingest.on_message = lambda c, t, p, q, props: (got.append(p), 0)[1]
        await ingest.connect("127.0.0.1", plain)
        ingest.subscribe("$share/quantrac-ingest/stations/+/data", qos=1)
        station = Client("shipped-station")
        station.set_auth_credentials("X", secrets["X"])
        await station.connect("127.0.0.1", tls, ssl=ssl.create_default_context(cafile=str(ca)))
        await asyncio.sleep(0.3)
        station.publish("stations/X/data", b"over tls", qos=1)
        await wait_until(lambda: _async(got), 5)
        assert got == [b"over tls"]
        with pytest.raises(MQTTConnectError):
            anonymous = Client("shipped-anonymous")
            try:
                await anonymous.connect("127.0.0.1", plain)
            finally:
                await anonymous.disconnect()
        # The station port speaks TLS only: plain MQTT gets no CONNACK there.
        cleartext = Client("shipped-cleartext")
        cleartext.set_auth_credentials("X", secrets["X"])
        with pytest.raises((TimeoutError, OSError, MQTTConnectError)):
            await asyncio.wait_for(cleartext.connect("127.0.0.1", tls), 3)
        assert not cleartext.is_connected
        for client in (ingest, station):
            await client.disconnect()
    finally:
        process.terminate()
        process.wait(10)


@needs_broker
@pytest.mark.integration
async def test_ingest_with_a_wrong_secret_stops_with_a_clear_message(
    broker: Broker, make_settings: Any
) -> None:
    settings = make_settings(
        mqtt_url=f"mqtt://127.0.0.1:{broker.server.port}",
        mqtt_username="quantrac-ingest",
        mqtt_password="not-the-secret",
        alerts_enabled=False,
    )
    service = IngestService(settings)
    service.load_configuration()
    try:
        with pytest.raises(RuntimeError, match="refused quantrac \\('quantrac-ingest'\\)"):
            await asyncio.wait_for(service.start(), 20)
    finally:
        await service.stop()
