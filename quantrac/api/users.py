"""Users, roles, passwords and API tokens.

Roles: ``operator`` acknowledges and resolves alerts; ``inspector`` reads and exports; ``admin``
does both and manages the registry and users. Passwords are stored as scrypt hashes; tokens
handed out at login are random and only their SHA-256 is stored.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import psycopg

ROLES = ("operator", "inspector", "admin")
# What each role may do; the admin may do everything.
PERMISSIONS = {
    "read": {"operator", "inspector", "admin"},
    "act": {"operator", "admin"},  # acknowledge, resolve, annotate alerts
    "export": {"inspector", "admin"},
    "admin": {"admin"},
}
TOKEN_LIFETIME = timedelta(hours=12)
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


@dataclass(frozen=True, slots=True)
class User:
    id: int
    username: str
    display_name: str
    role: str

    def may(self, permission: str) -> bool:
        return self.role in PERMISSIONS[permission]

    def to_json(self) -> dict[str, Any]:
        return {
            "username": self.username,
            "display_name": self.display_name,
            "role": self.role,
        }


def hash_password(password: str, salt: bytes | None = None) -> str:
    salt = salt or secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **_SCRYPT)
    b64 = base64.b64encode
    return f"scrypt${_SCRYPT['n']}${b64(salt).decode()}${b64(digest).decode()}"


def check_password(password: str, stored: str) -> bool:
    try:
        scheme, n, salt_b64, digest_b64 = stored.split("$")
        salt, digest = base64.b64decode(salt_b64), base64.b64decode(digest_b64)
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    candidate = hashlib.scrypt(password.encode(), salt=salt, dklen=len(digest), n=int(n), r=8, p=1)
    return hmac.compare_digest(candidate, digest)


def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


class UserError(ValueError):
    pass


def check_new_user(username: str, role: str, password: str) -> None:
    if not username or not username.replace(".", "").replace("_", "").replace("-", "").isalnum():
        raise UserError("username: letters, digits, '.', '_' and '-' only")
    if role not in ROLES:
        raise UserError(f"role: one of {', '.join(ROLES)}")
    if len(password) < 8:
        raise UserError("password: at least 8 characters")


async def add_user(
    conn: psycopg.AsyncConnection, username: str, role: str, password: str, display_name: str = ""
) -> User:
    check_new_user(username, role, password)
    try:
        cur = await conn.execute(
            "INSERT INTO users (username, display_name, role, password_hash) "
            "VALUES (%s, %s, %s, %s) RETURNING id",
            [username, display_name or username, role, hash_password(password)],
        )
    except psycopg.errors.UniqueViolation:
        raise UserError(f"user {username!r} exists already") from None
    row = await cur.fetchone()
    assert row is not None
    return User(row[0], username, display_name or username, role)


async def authenticate(conn: psycopg.AsyncConnection, username: str, password: str) -> User | None:
    cur = await conn.execute(
        "SELECT id, username, display_name, role, password_hash FROM users "
        "WHERE username = %s AND NOT disabled",
        [username],
    )
    row = await cur.fetchone()
    if row is None or not check_password(password, row[4]):
        return None
    return User(row[0], row[1], row[2], row[3])


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
    cur = await conn.execute(
        "SELECT u.id, u.username, u.display_name, u.role FROM api_tokens t "
        "JOIN users u ON u.id = t.user_id "
        "WHERE t.token_hash = %s AND t.expires_at > %s AND NOT u.disabled",
        [_token_hash(token), now],
    )
    row = await cur.fetchone()
    return User(*row) if row else None


async def list_users(conn: psycopg.AsyncConnection) -> list[User]:
    cur = await conn.execute(
        "SELECT id, username, display_name, role FROM users WHERE NOT disabled ORDER BY username"
    )
    return [User(*row) for row in await cur.fetchall()]


async def audit(
    conn: psycopg.AsyncConnection, actor: str, action: str, target: str, details: Any
) -> None:
    from psycopg.types.json import Jsonb

    await conn.execute(
        "INSERT INTO audit_log (actor, action, target, details) VALUES (%s, %s, %s, %s)",
        [actor, action, target, Jsonb(details)],
    )
