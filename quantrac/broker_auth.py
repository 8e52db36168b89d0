"""Broker accounts: one secret per station of the registry, and quantrac's own service accounts.

``quantrac stations credentials`` keeps the accounts in ``accounts.json`` (hashes only: a secret
is printed once, when it is created or rotated, and never stored) and writes from it what each
broker needs:

- Mosquitto: ``dynamic-security.json``, the configuration of its dynamic-security plugin, which
  the shipped ``config/mosquitto/mosquitto.conf`` loads: one client and one role per station,
  refused by default. Also ``passwd`` (a ``password_file``, PBKDF2-SHA512 ``$7$`` lines as
  ``mosquitto_passwd`` writes them) and ``acl`` (an ``acl_file``) for set-ups that use those;
  but Mosquitto 2.0's ``acl_file`` checks reads only at delivery, not at SUBSCRIBE, so any
  signed-in client can still join ``$share/quantrac-ingest`` and have half of ingest's messages
  dropped on their way to it (measured on 2.0.11). The plugin refuses that subscription.
- EMQX: ``emqx-users.csv`` (the built-in database's user import: ``user_id,password_hash,salt,
  is_superuser``, SHA-256 with the salt as suffix) and ``emqx-acl.conf`` (its file authorizer).

A station may publish only on ``stations/<its id>/data`` and read only ``stations/<its id>/ack``.
Only quantrac's accounts read the data topics (through their shared-subscription groups), write
acks, and publish or read ``alerts/#``; everything else is refused.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import os
import re
import secrets
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ACCOUNTS_FILE = "accounts.json"
MOSQUITTO_PASSWORDS = "passwd"
MOSQUITTO_ACL = "acl"
MOSQUITTO_DYNSEC = "dynamic-security.json"
EMQX_USERS = "emqx-users.csv"
EMQX_ACL = "emqx-acl.conf"

# Mosquitto 2.0's own choice for `mosquitto_passwd` (PBKDF2-SHA512, 101 iterations, 12-byte
# salt). The secrets are 32 random bytes, so the iteration count adds nothing an attacker could
# not out-guess; a higher one would only slow every CONNECT.
_PBKDF2_ITERATIONS = 101
_SALT_BYTES = 12
_SECRET_BYTES = 32
# What Mosquitto substitutes for %u must not be a topic wildcard or level separator.
_ACCOUNT = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
SERVICE_PREFIX = "quantrac-"


class CredentialsError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class ServiceAccount:
    """One of quantrac's own broker clients and what it may do."""

    name: str
    purpose: str
    share_groups: tuple[str, ...]  # groups it subscribes to on stations/+/data
    writes_acks: bool
    publishes_alerts: bool
    reads_alerts: bool


def service_accounts(ingest_group: str, alerts_group: str) -> tuple[ServiceAccount, ...]:
    return (
        # `quantrac run`: ingest, and on a single node the alert engine and the API in the
        # same process, with the same account.
        ServiceAccount(
            "quantrac-ingest",
            "quantrac run (ingest; with the alert engine and API on a single node)",
            (ingest_group, alerts_group),
            writes_acks=True,
            publishes_alerts=True,
            reads_alerts=True,
        ),
        ServiceAccount(
            "quantrac-alerts",
            "quantrac alerts (the alert engine alone)",
            (alerts_group,),
            writes_acks=False,
            publishes_alerts=True,
            reads_alerts=False,
        ),
        ServiceAccount(
            "quantrac-api",
            "quantrac api (the HTTP API and board alone)",
            (),
            writes_acks=False,
            publishes_alerts=True,
            reads_alerts=True,
        ),
    )


def mosquitto_hash(secret: str, salt: bytes | None = None) -> str:
    """A password_file hash in Mosquitto's ``$7$`` form (as ``mosquitto_passwd`` writes)."""
    salt = salt or secrets.token_bytes(_SALT_BYTES)
    digest = hashlib.pbkdf2_hmac("sha512", secret.encode(), salt, _PBKDF2_ITERATIONS)
    b64 = base64.b64encode
    return f"$7${_PBKDF2_ITERATIONS}${b64(salt).decode()}${b64(digest).decode()}"


def emqx_hash(secret: str, salt: str | None = None) -> tuple[str, str]:
    """EMQX built-in database, ``password_hash_algorithm {name = sha256, salt_position =
    suffix}``: hex SHA-256 of the secret followed by the salt."""
    salt = salt or secrets.token_hex(16)
    return hashlib.sha256((secret + salt).encode()).hexdigest(), salt


def new_secret() -> str:
    return secrets.token_urlsafe(_SECRET_BYTES)


@dataclass
class Account:
    name: str
    kind: str  # "station" or "service"
    mosquitto: str
    emqx_hash: str
    emqx_salt: str
    rotated_at: str

    @classmethod
    def create(cls, name: str, kind: str, secret: str, now: datetime) -> Account:
        digest, salt = emqx_hash(secret)
        return cls(name, kind, mosquitto_hash(secret), digest, salt, now.isoformat())


@dataclass(frozen=True, slots=True)
class Issued:
    """A secret created or rotated by this run: shown once, then only its hashes remain."""

    account: str
    kind: str
    secret: str
    reason: str  # "new" or "rotated"


def load_accounts(folder: Path) -> dict[str, Account]:
    path = folder / ACCOUNTS_FILE
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return {name: Account(name=name, **fields) for name, fields in data["accounts"].items()}
    except (ValueError, KeyError, TypeError) as exc:
        raise CredentialsError(f"{path}: not a quantrac accounts file ({exc})") from None


def update_accounts(
    accounts: dict[str, Account],
    station_ids: Iterable[str],
    services: Iterable[ServiceAccount],
    rotate: Iterable[str] = (),
    rotate_all: bool = False,
    now: datetime | None = None,
) -> tuple[dict[str, Account], list[Issued], list[str]]:
    """Accounts for exactly these stations and services: new ones get a secret, the ones in
    ``rotate`` (or all) a new one; stations gone from the registry are removed.

    Returns the accounts, the secrets issued, and the names removed."""
    now = now or datetime.now(UTC)
    wanted: dict[str, str] = {}
    for service in services:
        wanted[service.name] = "service"
    for station_id in station_ids:
        if not _ACCOUNT.fullmatch(station_id):
            raise CredentialsError(f"station id {station_id!r} cannot be a broker user name")
        if station_id.startswith(SERVICE_PREFIX):
            raise CredentialsError(
                f"station id {station_id!r}: names starting {SERVICE_PREFIX!r} are quantrac's"
            )
        wanted[station_id] = "station"
    rotate = set(rotate)
    unknown = sorted(rotate - set(wanted))
    if unknown:
        raise CredentialsError(f"no such station or service account: {', '.join(unknown)}")
    result: dict[str, Account] = {}
    issued: list[Issued] = []
    for name, kind in wanted.items():
        existing = accounts.get(name)
        if existing is not None and not rotate_all and name not in rotate:
            result[name] = existing
            continue
        secret = new_secret()
        result[name] = Account.create(name, kind, secret, now)
        issued.append(Issued(name, kind, secret, "new" if existing is None else "rotated"))
    removed = sorted(set(accounts) - set(wanted))
    return result, issued, removed


def mosquitto_password_file(accounts: dict[str, Account]) -> str:
    return "".join(f"{a.name}:{a.mosquitto}\n" for a in _sorted(accounts))


def mosquitto_acl(accounts: dict[str, Account], services: Iterable[ServiceAccount]) -> str:
    lines = [
        "# Written by `quantrac stations credentials`; do not edit (it is rewritten).",
        "# Nothing is allowed unless listed; anonymous clients get nothing.",
        "",
        "# Every station: publish its own readings, read its own acks; nothing else.",
        "pattern write stations/%u/data",
        "pattern read stations/%u/ack",
    ]
    present = set(accounts)
    for service in services:
        if service.name not in present:
            continue
        lines += ["", f"# {service.purpose}", f"user {service.name}"]
        if service.share_groups:
            lines.append("topic read stations/+/data")
            lines += [f"topic read $share/{g}/stations/+/data" for g in service.share_groups]
        if service.writes_acks:
            lines.append("topic write stations/+/ack")
        if service.publishes_alerts and service.reads_alerts:
            lines.append("topic readwrite alerts/#")
        elif service.publishes_alerts:
            lines.append("topic write alerts/#")
        elif service.reads_alerts:
            lines.append("topic read alerts/#")
    return "\n".join(lines) + "\n"


def _acl(kind: str, topic: str) -> dict[str, Any]:
    return {"acltype": kind, "topic": topic, "priority": 0, "allow": True}


def mosquitto_dynamic_security(
    accounts: dict[str, Account], services: Iterable[ServiceAccount]
) -> dict[str, Any]:
    """The dynamic-security plugin's configuration: default deny, one role per account."""
    by_name = {s.name: s for s in services}
    clients, roles = [], []
    for account in _sorted(accounts):
        scheme, iterations, salt, digest = account.mosquitto.split("$")[1:]
        assert scheme == "7"
        role = f"{account.kind}-{account.name}"
        if account.kind == "station":
            acls = [
                _acl("publishClientSend", f"stations/{account.name}/data"),
                _acl("subscribeLiteral", f"stations/{account.name}/ack"),
                _acl("publishClientReceive", f"stations/{account.name}/ack"),
            ]
        else:
            service = by_name[account.name]
            acls = []
            if service.share_groups:
                acls.append(_acl("publishClientReceive", "stations/+/data"))
                acls += [
                    _acl("subscribePattern", f"$share/{g}/stations/+/data")
                    for g in service.share_groups
                ]
            if service.writes_acks:
                acls.append(_acl("publishClientSend", "stations/+/ack"))
            if service.publishes_alerts:
                acls.append(_acl("publishClientSend", "alerts/#"))
            if service.reads_alerts:
                acls += [
                    _acl("subscribePattern", "alerts/#"),
                    _acl("publishClientReceive", "alerts/#"),
                ]
        roles.append({"rolename": role, "acls": acls})
        clients.append(
            {
                "username": account.name,
                "roles": [{"rolename": role}],
                "password": digest,
                "salt": salt,
                "iterations": int(iterations),
            }
        )
    return {
        "defaultACLAccess": {
            "publishClientSend": False,
            "publishClientReceive": False,
            "subscribe": False,
            "unsubscribe": True,
        },
        "clients": clients,
        "groups": [],
        "roles": roles,
    }


def emqx_users_csv(accounts: dict[str, Account]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["user_id", "password_hash", "salt", "is_superuser"])
    for a in _sorted(accounts):
        writer.writerow([a.name, a.emqx_hash, a.emqx_salt, "false"])
    return out.getvalue()


def emqx_acl(services: Iterable[ServiceAccount]) -> str:
    """EMQX's file authorizer (acl.conf): Erlang terms, first match wins, then deny."""
    lines = [
        "%% Written by `quantrac stations credentials`; do not edit (it is rewritten).",
        "%% Use with authorization.no_match = deny and authorization.sources = [file].",
    ]
    for service in services:
        who = f'{{username, "{service.name}"}}'
        topics = [f'"$share/{g}/stations/+/data"' for g in service.share_groups]
        if topics:
            lines.append(f"{{allow, {who}, subscribe, [{', '.join(topics)}]}}.")
        if service.writes_acks:
            lines.append(f'{{allow, {who}, publish, ["stations/+/ack"]}}.')
        if service.publishes_alerts:
            lines.append(f'{{allow, {who}, publish, ["alerts/#"]}}.')
        if service.reads_alerts:
            lines.append(f'{{allow, {who}, subscribe, ["alerts/#"]}}.')
    lines += [
        "%% Every station: its own data topic and its own ack topic, nothing else.",
        '{allow, all, publish, ["stations/${username}/data"]}.',
        '{allow, all, subscribe, ["stations/${username}/ack"]}.',
        "{deny, all}.",
    ]
    return "\n".join(lines) + "\n"


def write_accounts(
    folder: Path, accounts: dict[str, Account], services: Iterable[ServiceAccount]
) -> list[Path]:
    """Write the store and every broker file, each atomically. They hold only hashes of
    256-bit random secrets (not guessable), and are readable by all so that the broker can read
    them after dropping its privileges."""
    services = tuple(services)
    folder.mkdir(parents=True, exist_ok=True)
    store = {
        "accounts": {
            a.name: {
                "kind": a.kind,
                "mosquitto": a.mosquitto,
                "emqx_hash": a.emqx_hash,
                "emqx_salt": a.emqx_salt,
                "rotated_at": a.rotated_at,
            }
            for a in _sorted(accounts)
        }
    }
    files = {
        ACCOUNTS_FILE: json.dumps(store, indent=2) + "\n",
        MOSQUITTO_PASSWORDS: mosquitto_password_file(accounts),
        MOSQUITTO_ACL: mosquitto_acl(accounts, services),
        MOSQUITTO_DYNSEC: json.dumps(mosquitto_dynamic_security(accounts, services), indent=1),
        EMQX_USERS: emqx_users_csv(accounts),
        EMQX_ACL: emqx_acl(services),
    }
    written = []
    for name, text in files.items():
        path = folder / name
        fd, tmp = tempfile.mkstemp(dir=folder, prefix=f".{name}-")
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
        written.append(path)
    return written


def _sorted(accounts: dict[str, Account]) -> list[Account]:
    return sorted(accounts.values(), key=lambda a: (a.kind != "service", a.name))


def issued_json(issued: Iterable[Issued]) -> list[dict[str, Any]]:
    return [
        {"account": i.account, "kind": i.kind, "secret": i.secret, "reason": i.reason}
        for i in issued
    ]
