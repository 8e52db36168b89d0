"""Tables of the HTTP side: users (with their scope), their API tokens, and the audit log of
every change and failed sign-in."""

from __future__ import annotations

import psycopg

from quantrac.core.migrations import apply_component_migrations

_MIGRATION_LOCK = 0x71617069  # "qapi"


async def _v1(conn: psycopg.AsyncConnection) -> None:
    await conn.execute("""
        CREATE TABLE users (
            id            bigserial PRIMARY KEY,
            username      text NOT NULL UNIQUE,
            display_name  text NOT NULL,
            role          text NOT NULL CHECK (role IN ('operator', 'inspector', 'admin')),
            password_hash text NOT NULL,
            disabled      boolean NOT NULL DEFAULT false,
            created_at    timestamptz NOT NULL DEFAULT now()
        );
        CREATE TABLE api_tokens (
            token_hash  text PRIMARY KEY,
            user_id     bigint NOT NULL REFERENCES users (id),
            created_at  timestamptz NOT NULL DEFAULT now(),
            expires_at  timestamptz NOT NULL
        );
        CREATE TABLE audit_log (
            id       bigserial PRIMARY KEY,
            at       timestamptz NOT NULL DEFAULT now(),
            actor    text NOT NULL,
            action   text NOT NULL,
            target   text NOT NULL,
            details  jsonb NOT NULL DEFAULT '{}'
        );
        CREATE INDEX audit_log_at ON audit_log (at DESC);
    """)


async def _v2(conn: psycopg.AsyncConnection) -> None:
    await conn.execute("""
        ALTER TABLE users DROP CONSTRAINT users_role_check;
        ALTER TABLE users ADD CONSTRAINT users_role_check
            CHECK (role IN ('operator', 'inspector', 'admin', 'facility'));
        ALTER TABLE users
            ADD COLUMN scoped boolean NOT NULL DEFAULT false,
            ADD COLUMN scope_provinces text[] NOT NULL DEFAULT '{}',
            ADD COLUMN scope_facilities text[] NOT NULL DEFAULT '{}',
            ADD COLUMN scope_stations text[] NOT NULL DEFAULT '{}',
            ADD COLUMN password_changed_at timestamptz NOT NULL DEFAULT now();
        ALTER TABLE api_tokens ADD COLUMN revoked_at timestamptz;
        CREATE INDEX api_tokens_user ON api_tokens (user_id);
        CREATE INDEX audit_log_action_at ON audit_log (action, at DESC);
    """)


MIGRATIONS = [
    (1, "users, API tokens, audit log", _v1),
    (2, "user scopes and the facility role, token revocation", _v2),
]


async def upgrade(conn: psycopg.AsyncConnection) -> list[int]:
    return await apply_component_migrations(conn, "api_migrations", _MIGRATION_LOCK, MIGRATIONS)
