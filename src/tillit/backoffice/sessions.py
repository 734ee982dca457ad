"""Back-office sessions: an API key signs in once; the browser then holds only a random session token.

Contract:
- ``start`` checks the key (access/keys.authenticate), stores ``sha256(token)`` with the key's id, a CSRF
  token and an absolute expiry (``SESSION_TTL``), and returns the token for the cookie. The API key is
  never stored, neither in the cookie nor in the table.
- ``resolve`` answers the session's Actor only while the session is unexpired *and* its key unrevoked:
  revoking a key ends its sessions at once.
- ``end`` deletes the session (sign-out); expired rows are deleted whenever a session starts.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import Connection, delete, insert, select

from tillit.access.keys import authenticate
from tillit.adapters.db.schema import api_keys, backoffice_sessions, merchants, terminals
from tillit.kernel.context import Actor, Deps

SESSION_TTL = timedelta(hours=8)
TOKEN_BYTES = 32
MAX_KEY_LENGTH = 200  # API keys are ~50 characters; anything longer is refused before hashing


@dataclass(frozen=True, slots=True)
class Session:
    token_hash: str
    actor: Actor
    csrf_token: str
    expires_at: datetime
    merchant_name: str | None = None


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def start(conn: Connection, deps: Deps, api_key: str) -> tuple[str, Session]:
    """Sign in with ``api_key``; an unknown or revoked key raises ``unauthenticated`` and writes nothing."""
    actor = authenticate(conn, api_key.strip()[:MAX_KEY_LENGTH])
    now = deps.clock.now()
    conn.execute(delete(backoffice_sessions).where(backoffice_sessions.c.expires_at <= now))
    token = secrets.token_urlsafe(TOKEN_BYTES)
    session = Session(token_hash(token), actor, secrets.token_urlsafe(TOKEN_BYTES), now + SESSION_TTL)
    conn.execute(
        insert(backoffice_sessions).values(
            token_hash=session.token_hash,
            key_id=actor.key_id,
            merchant_id=actor.merchant_id,
            csrf_token=session.csrf_token,
            created_at=now,
            expires_at=session.expires_at,
        )
    )
    return token, session


_RESOLVE = select(
    backoffice_sessions.c.token_hash,
    backoffice_sessions.c.csrf_token,
    backoffice_sessions.c.expires_at,
    api_keys.c.id.label("key_id"),
    api_keys.c.role,
    api_keys.c.merchant_id,
    api_keys.c.terminal_id,
    api_keys.c.revoked_at,
    terminals.c.store_id,
    merchants.c.name.label("merchant_name"),
).select_from(
    backoffice_sessions.join(api_keys, api_keys.c.id == backoffice_sessions.c.key_id)
    .outerjoin(terminals, terminals.c.id == api_keys.c.terminal_id)
    .outerjoin(merchants, merchants.c.id == api_keys.c.merchant_id)
)


def resolve(conn: Connection, deps: Deps, token: str | None) -> Session | None:
    """The live session for a cookie's token, or None (no cookie, unknown, expired or key revoked)."""
    if not token or len(token) > 100:
        return None
    row = conn.execute(_RESOLVE.where(backoffice_sessions.c.token_hash == token_hash(token))).first()
    if row is None or row.revoked_at is not None or row.expires_at <= deps.clock.now():
        return None
    actor = Actor(
        key_id=row.key_id,
        role=row.role,
        merchant_id=row.merchant_id,
        terminal_id=row.terminal_id,
        store_id=row.store_id,
    )
    return Session(row.token_hash, actor, row.csrf_token, row.expires_at, row.merchant_name)


def end(conn: Connection, token: str | None) -> None:
    if token:
        conn.execute(delete(backoffice_sessions).where(backoffice_sessions.c.token_hash == token_hash(token)))
