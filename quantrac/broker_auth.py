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


# What an account may do, broker-neutral: (action, topic). "publish" sends on a topic,
# "subscribe" may subscribe with this filter, "receive" may be delivered messages of it.
Grant = tuple[str, str]


def station_grants(station_id: str) -> list[Grant]:
    """A station's rights; ``station_id`` may be a broker's placeholder for the user name."""
    return [
        ("publish", f"stations/{station_id}/data"),
        ("subscribe", f"stations/{station_id}/ack"),
        ("receive", f"stations/{station_id}/ack"),
    ]


def service_grants(service: ServiceAccount) -> list[Grant]:
    grants: list[Grant] = []
    if service.share_groups:
        grants.append(("receive", "stations/+/data"))
        grants += [("subscribe", f"$share/{g}/stations/+/data") for g in service.share_groups]
    if service.writes_acks:
        grants.append(("publish", "stations/+/ack"))
    if service.publishes_alerts:
        grants.append(("publish", "alerts/#"))
    if service.reads_alerts:
        grants += [("subscribe", "alerts/#"), ("receive", "alerts/#")]
    return grants


def _mosquitto_lines(grants: list[Grant], keyword: str) -> list[str]:
    """acl_file lines: it knows only read (subscribe and receive alike) and write."""
    lines: list[str] = []
    for action, topic in grants:
        line = f"{keyword} {'write' if action == 'publish' else 'read'} {topic}"
        if line not in lines:
            lines.append(line)
    return lines


def mosquitto_acl(accounts: dict[str, Account], services: Iterable[ServiceAccount]) -> str:
    lines = [
        "# Written by `quantrac stations credentials`; do not edit (it is rewritten).",
        "# Nothing is allowed unless listed; anonymous clients get nothing.",
        "",
        "# Every station: publish its own readings, read its own acks; nothing else.",
        *_mosquitto_lines(station_grants("%u"), "pattern"),
    ]
    for service in services:
        if service.name in accounts:
            lines += ["", f"# {service.purpose}", f"user {service.name}"]
            lines += _mosquitto_lines(service_grants(service), "topic")
    return "\n".join(lines) + "\n"


_DYNSEC_ACL = {
    "publish": "publishClientSend",
    "subscribe": "subscribePattern",
    "receive": "publishClientReceive",
}


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
        grants = (
            station_grants(account.name)
            if account.kind == "station"
            else service_grants(by_name[account.name])
        )
        acls = [
            {"acltype": _DYNSEC_ACL[action], "topic": topic, "priority": 0, "allow": True}
            for action, topic in grants
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


def _emqx_rules(who: str, grants: list[Grant]) -> list[str]:
    """acl.conf rules. EMQX checks subscriptions and delivers what they match, so "receive" is a
    subscription right too; a shared subscription is allowed by its ``$share/…`` filter or by
    the topic filter behind it, whichever EMQX checks (both are listed)."""
    by_action: dict[str, list[str]] = {}
    for action, topic in grants:
        topics = by_action.setdefault("publish" if action == "publish" else "subscribe", [])
        if f'"{topic}"' not in topics:
            topics.append(f'"{topic}"')
    return [f"{{allow, {who}, {action}, [{', '.join(t)}]}}." for action, t in by_action.items()]


def emqx_acl(services: Iterable[ServiceAccount]) -> str:
    """EMQX's file authorizer (acl.conf): Erlang terms, first match wins, then deny."""
    lines = [
        "%% Written by `quantrac stations credentials`; do not edit (it is rewritten).",
        "%% Use with authorization.no_match = deny and authorization.sources = [file].",
    ]
    for service in services:
        lines += _emqx_rules(f'{{username, "{service.name}"}}', service_grants(service))
    lines += [
        "%% Every station: its own data topic and its own ack topic, nothing else.",
        *_emqx_rules("all", station_grants("${username}")),
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
