"""Users, roles, scopes, passwords and API tokens.

Roles: ``operator`` acknowledges and resolves alerts; ``inspector`` reads and exports; ``admin``
does both and manages the registry and users; ``facility`` reads and exports only the stations
of its own facilities. Any user but an admin may be limited to provinces, facilities or
stations (its scope); a facility user must be.

Passwords are stored as Argon2id hashes with OWASP's parameters (19 MiB, 2 passes, 1 lane);
older scrypt hashes still verify and are replaced at the next sign-in. Hashing runs in a worker
thread, on at most half the cores, never on the event loop that ingest shares. Tokens handed out at
login are random, expire after 12 hours and can be revoked; only their SHA-256 is stored.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import os
import secrets
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import psycopg
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from quantrac.core.i18n import Phrase, TranslatedError

if TYPE_CHECKING:
    from quantrac.core.registry import Station

ROLES = ("operator", "inspector", "admin", "facility")
# What each role may do; the admin may do everything.
PERMISSIONS = {
    "read": {"operator", "inspector", "admin", "facility"},
    "act": {"operator", "admin"},  # acknowledge, resolve, annotate alerts
    "export": {"inspector", "admin", "facility"},
    "admin": {"admin"},
}
TOKEN_LIFETIME = timedelta(hours=12)
MIN_PASSWORD = 8
MAX_PASSWORD = 1024  # longer ones only cost hashing time
# OWASP Password Storage Cheat Sheet: Argon2id, m = 19 MiB, t = 2, p = 1.
_HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
# Hashes run in their own threads, on at most half the cores: a burst of sign-ins queues here
# instead of taking the event loop, or the cores ingest and PostgreSQL need (measured in
# docs/benchmarks.md, on two cores: a storm slowed ingest 5.3x on the loop, 2.1x with two
# hashing threads, 2.0x with one).
_HASHING = ThreadPoolExecutor(
    max_workers=max(1, (os.cpu_count() or 2) // 2), thread_name_prefix="quantrac-password"
)


@functools.cache
def _dummy_hash() -> str:
    """Verified when the user is unknown, so that a wrong username costs what a wrong password
    does."""
    return _HASHER.hash(secrets.token_urlsafe(16))


@dataclass(frozen=True, slots=True)
class Scope:
    """Where a user may look: stations of these provinces, facilities, or these stations."""

    provinces: frozenset[str] = frozenset()
    facilities: frozenset[str] = frozenset()
    stations: frozenset[str] = frozenset()

    def allows(self, station: Station) -> bool:
        return (
            station.id in self.stations
            or station.facility in self.facilities
            or station.province in self.provinces
        )

    @property
    def empty(self) -> bool:
        return not (self.provinces or self.facilities or self.stations)

    def to_json(self) -> dict[str, list[str]]:
        return {
            "provinces": sorted(self.provinces),
            "facilities": sorted(self.facilities),
            "stations": sorted(self.stations),
        }


@dataclass(frozen=True, slots=True)
class User:
    id: int
    username: str
    display_name: str
    role: str
    # None: every station. Otherwise only the stations the scope allows.
    scope: Scope | None = None
    disabled: bool = field(default=False, compare=False)

    def may(self, permission: str) -> bool:
        return self.role in PERMISSIONS[permission]

    @property
    def role_name(self) -> Phrase:
        """The role as a refusal names it, in the reader's language."""
        return Phrase(f"api.role.{self.role}")

    def sees(self, station: Station) -> bool:
        return self.scope is None or self.scope.allows(station)

    def to_json(self) -> dict[str, Any]:
        return {
            "username": self.username,
            "display_name": self.display_name,
            "role": self.role,
            "scope": self.scope.to_json() if self.scope is not None else None,
        }


def hash_password(password: str) -> str:
    return _HASHER.hash(password)


def check_password(password: str, stored: str) -> bool:
    if stored.startswith("scrypt$"):
        return _check_scrypt(password, stored)
    try:
        return _HASHER.verify(stored, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(stored: str) -> bool:
    return stored.startswith("scrypt$") or _HASHER.check_needs_rehash(stored)


def _check_scrypt(password: str, stored: str) -> bool:
    """Hashes written before Argon2id (scrypt, N = 2^14, r = 8, p = 1)."""
    try:
        _, n, salt_b64, digest_b64 = stored.split("$")
        salt, digest = base64.b64decode(salt_b64), base64.b64decode(digest_b64)
        candidate = hashlib.scrypt(
            password.encode(), salt=salt, dklen=len(digest), n=int(n), r=8, p=1
        )
    except ValueError:
        return False
    return hmac.compare_digest(candidate, digest)


async def hash_password_off_loop(password: str) -> str:
    return await asyncio.get_running_loop().run_in_executor(_HASHING, hash_password, password)


async def check_password_off_loop(password: str, stored: str) -> bool:
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_HASHING, check_password, password, stored)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class UserError(TranslatedError):
    pass


def check_username(username: str) -> None:
    if (
        not username
        or len(username) > 64
        or not username.replace(".", "").replace("_", "").replace("-", "").isascii()
        or not username.replace(".", "").replace("_", "").replace("-", "").isalnum()
    ):
        raise UserError("error.user.username")


def check_password_rules(password: str) -> None:
    if len(password) < MIN_PASSWORD:
        raise UserError("error.user.password_short", min=MIN_PASSWORD)
    if len(password) > MAX_PASSWORD:
        raise UserError("error.user.password_long", max=MAX_PASSWORD)


def check_new_user(username: str, role: str, password: str, scope: Scope | None = None) -> None:
    check_username(username)
    if role not in ROLES:
        raise UserError("error.user.role", roles=", ".join(ROLES))
    check_scope(role, scope)
    check_password_rules(password)


def check_scope(role: str, scope: Scope | None) -> None:
    if role == "admin" and scope is not None:
        raise UserError("error.user.scope_admin")
    if role == "facility" and (scope is None or (not scope.facilities and not scope.stations)):
        raise UserError("error.user.scope_facility")
    if scope is not None and scope.empty:
        raise UserError("error.user.scope_empty")


_USER_COLUMNS = (
    "id, username, display_name, role, scope_provinces, scope_facilities, scope_stations, "
    "scoped, disabled"
)


def _user(row: Any) -> User:
    scope = Scope(frozenset(row[4]), frozenset(row[5]), frozenset(row[6])) if row[7] else None
    return User(row[0], row[1], row[2], row[3], scope, row[8])


def _scope_args(scope: Scope | None) -> list[Any]:
    s = scope or Scope()
    return [sorted(s.provinces), sorted(s.facilities), sorted(s.stations), scope is not None]


async def add_user(
    conn: psycopg.AsyncConnection,
    username: str,
    role: str,
    password: str,
    display_name: str = "",
    scope: Scope | None = None,
) -> User:
    check_new_user(username, role, password, scope)
    digest = await hash_password_off_loop(password)
    try:
        cur = await conn.execute(
            "INSERT INTO users (username, display_name, role, password_hash, scope_provinces, "
            "scope_facilities, scope_stations, scoped) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) "
            f"RETURNING {_USER_COLUMNS}",
            [username, display_name or username, role, digest, *_scope_args(scope)],
        )
    except psycopg.errors.UniqueViolation:
        raise UserError("error.user.exists", username=repr(username)) from None
    row = await cur.fetchone()
    assert row is not None
    return _user(row)


async def authenticate(conn: psycopg.AsyncConnection, username: str, password: str) -> User | None:
    """The user, if the password is right and the user enabled. Takes as long for an unknown or
    disabled user as for a wrong password: no username is revealed by timing."""
    cur = await conn.execute(
        f"SELECT {_USER_COLUMNS}, password_hash FROM users WHERE username = %s", [username]
    )
    row = await cur.fetchone()
    stored = row[9] if row is not None else _dummy_hash()
    ok = await check_password_off_loop(password, stored)
    if row is None or not ok or row[8]:
        return None
    if needs_rehash(stored):
        await conn.execute(
            "UPDATE users SET password_hash = %s WHERE id = %s",
            [await hash_password_off_loop(password), row[0]],
        )
    return _user(row)


async def issue_token(
    conn: psycopg.AsyncConnection, user: User, now: datetime
) -> tuple[str, datetime]:
    token = secrets.token_urlsafe(32)
    expires = now + TOKEN_LIFETIME
    await conn.execute(
        "INSERT INTO api_tokens (token_hash, user_id, expires_at) VALUES (%s, %s, %s)",
        [_token_hash(token), user.id, expires],
    )
    return token, expires


async def user_for_token(conn: psycopg.AsyncConnection, token: str, now: datetime) -> User | None:
    if len(token) > 256:
        return None
    cols = ", ".join(f"u.{c.strip()}" for c in _USER_COLUMNS.split(","))
    cur = await conn.execute(
        f"SELECT {cols} FROM api_tokens t JOIN users u ON u.id = t.user_id "
        "WHERE t.token_hash = %s AND t.expires_at > %s AND t.revoked_at IS NULL "
        "AND NOT u.disabled",
        [_token_hash(token), now],
    )
    row = await cur.fetchone()
    return _user(row) if row else None


async def revoke_token(conn: psycopg.AsyncConnection, token: str) -> bool:
    cur = await conn.execute(
        "UPDATE api_tokens SET revoked_at = now() WHERE token_hash = %s AND revoked_at IS NULL",
        [_token_hash(token)],
    )
    return cur.rowcount > 0


async def revoke_tokens_of(conn: psycopg.AsyncConnection, user_id: int) -> int:
    cur = await conn.execute(
        "UPDATE api_tokens SET revoked_at = now() WHERE user_id = %s AND revoked_at IS NULL",
        [user_id],
    )
    return cur.rowcount


async def get_user(conn: psycopg.AsyncConnection, username: str) -> User | None:
    cur = await conn.execute(f"SELECT {_USER_COLUMNS} FROM users WHERE username = %s", [username])
    row = await cur.fetchone()
    return _user(row) if row else None


async def password_hash_of(conn: psycopg.AsyncConnection, user_id: int) -> str | None:
    """The stored password hash of a user; None when there is no such user."""
    cur = await conn.execute("SELECT password_hash FROM users WHERE id = %s", [user_id])
    row = await cur.fetchone()
    return str(row[0]) if row else None


async def set_password(conn: psycopg.AsyncConnection, user: User, password: str) -> None:
    """A new password; every token of the user stops working."""
    check_password_rules(password)
    digest = await hash_password_off_loop(password)
    await conn.execute(
        "UPDATE users SET password_hash = %s, password_changed_at = now() WHERE id = %s",
        [digest, user.id],
    )
    await revoke_tokens_of(conn, user.id)


async def set_disabled(conn: psycopg.AsyncConnection, user: User, disabled: bool) -> None:
    """A disabled user cannot sign in, and its tokens stop working at once."""
    await conn.execute("UPDATE users SET disabled = %s WHERE id = %s", [disabled, user.id])
    if disabled:
        await revoke_tokens_of(conn, user.id)


async def set_scope(
    conn: psycopg.AsyncConnection, user: User, role: str, scope: Scope | None
) -> None:
    if role not in ROLES:
        raise UserError("error.user.role", roles=", ".join(ROLES))
    check_scope(role, scope)
    await conn.execute(
        "UPDATE users SET role = %s, scope_provinces = %s, scope_facilities = %s, "
        "scope_stations = %s, scoped = %s WHERE id = %s",
        [role, *_scope_args(scope), user.id],
    )


async def list_users(conn: psycopg.AsyncConnection, include_disabled: bool = False) -> list[User]:
    cur = await conn.execute(
        f"SELECT {_USER_COLUMNS} FROM users "
        f"{'' if include_disabled else 'WHERE NOT disabled '}ORDER BY username"
    )
    return [_user(row) for row in await cur.fetchall()]


async def audit(
    conn: psycopg.AsyncConnection, actor: str, action: str, target: str, details: Any
) -> None:
    from psycopg.types.json import Jsonb

    await conn.execute(
        "INSERT INTO audit_log (actor, action, target, details) VALUES (%s, %s, %s, %s)",
        [actor, action, target, Jsonb(details)],
    )
