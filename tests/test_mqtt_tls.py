"""MQTT over TLS with username and password, against a real Mosquitto listener."""

from __future__ import annotations

import asyncio
import json
import shutil
import ssl
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from gmqtt import Client, MQTTConnectError

from quantrac.ingest.service import IngestService
from quantrac.localservers import MosquittoServer, find_mosquitto
from tests.conftest import fetch, wait_until

pytestmark = pytest.mark.integration


def make_certificates(folder: Path) -> tuple[Path, Path, Path]:
    """A private CA and a server certificate for 127.0.0.1."""
    ca_key, ca_cert = folder / "ca.key", folder / "ca.pem"
    key, csr, cert = folder / "server.key", folder / "server.csr", folder / "server.pem"
    ext = folder / "san.ext"
    ext.write_text("subjectAltName = IP:127.0.0.1\n")

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True)

    run(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-days",
        "2",
        "-subj",
        "/CN=quantrac test CA",
        "-keyout",
        str(ca_key),
        "-out",
        str(ca_cert),
    )
    run(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-subj",
        "/CN=127.0.0.1",
        "-keyout",
        str(key),
        "-out",
        str(csr),
    )
    run(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(ca_cert),
        "-CAkey",
        str(ca_key),
        "-CAcreateserial",
        "-days",
        "2",
        "-extfile",
        str(ext),
        "-out",
        str(cert),
    )
    return ca_cert, cert, key


@pytest.fixture
def tls_broker(tmp_path: Path):
    if shutil.which("openssl") is None or find_mosquitto() is None:
        pytest.skip("needs openssl and mosquitto")
    ca, cert, key = make_certificates(tmp_path)
    passwords = tmp_path / "passwd"
    passwords.write_text("")
    for user, password in (("ingest", "s3cret-ingest"), ("station", "s3cret-station")):
        subprocess.run(["mosquitto_passwd", "-b", str(passwords), user, password], check=True)
    for path in (cert, key, passwords):
        path.chmod(0o644)
    broker = MosquittoServer(
        tmp_path / "mq",
        persistence=False,
        extra_config=[
            f"certfile {cert}",
            f"keyfile {key}",
            "allow_anonymous false",
            f"password_file {passwords}",
        ],
    ).start()
    yield broker, ca
    broker.stop()


async def test_ingest_over_tls_with_credentials(tls_broker, make_settings, database_url):
    broker, ca = tls_broker
    settings = make_settings(
        mqtt_url=f"mqtts://ingest:s3cret-ingest@127.0.0.1:{broker.port}", mqtt_ca_file=ca
    )
    svc = IngestService(settings)
    await svc.start()
    try:
        await asyncio.wait_for(svc.mqtt.connected.wait(), 10)
        await asyncio.sleep(0.2)
        station = Client("tls-station")
        station.set_auth_credentials("station", "s3cret-station")
        await station.connect(
            "127.0.0.1", broker.port, ssl=ssl.create_default_context(cafile=str(ca))
        )
        moment = (datetime.now(UTC) - timedelta(minutes=5)).replace(microsecond=0)
        station.publish(
            "stations/WW1/data",
            json.dumps(
                {
                    "station": "WW1",
                    "time": moment.isoformat(),
                    "readings": [{"param": "COD", "value": 42.0, "unit": "mg/L"}],
                }
            ).encode(),
            qos=1,
        )
        rows = await wait_until(lambda: fetch(database_url, "SELECT param, value FROM readings"))
        assert rows == [("COD", 42.0)]
        await station.disconnect()
    finally:
        await svc.stop()


async def test_wrong_password_is_refused_by_the_broker(tls_broker):
    broker, ca = tls_broker
    intruder = Client("intruder")
    intruder.set_auth_credentials("station", "wrong")
    with pytest.raises(MQTTConnectError) as refused:
        await intruder.connect(
            "127.0.0.1", broker.port, ssl=ssl.create_default_context(cafile=str(ca))
        )
    assert "Not authorized" in str(refused.value)
