"""API keys: created once (the secret is shown only then), stored as SHA-256 hashes, revocable.

Keys are 32 random bytes, so a fast hash is enough: there is nothing to brute-force.

A server remembers a key it has accepted for at most ``KEY_CACHE_TTL_S`` (``KeyCache``), so most
requests authenticate without a database read. A revocation made through the server's own API takes
effect at once on that server; one made elsewhere (``tillit keys revoke``, ``tillit init --demo``,
another worker process) takes effect within ``KEY_CACHE_TTL_S``.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, bindparam, insert, select, update

from tillit.access.views import KeyView
from tillit.adapters.db.schema import api_keys, merchants, terminals
from tillit.domain.errors import DomainError, ErrorKind, invalid, not_found
from tillit.kernel.context import ROLES, Actor, Deps, iso

KEY_PREFIXES = {"admin": "tk_adm_", "merchant": "tk_mer_", "terminal": "tk_ter_"}
# How long a server may go on accepting a key after it was revoked by another process.
KEY_CACHE_TTL_S = 5.0
KEY_CACHE_MAX_ENTRIES = 1024


def hash_key(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def create_key(
    conn: Connection,
    deps: Deps,
    *,
    role: str,
    name: str,
    merchant_id: str | None = None,
    terminal_id: str | None = None,
) -> tuple[KeyView, str]:
    """Create a key; returns (its public record, the secret). The secret is never stored or logged.

    Scope rules: an admin key takes neither ``merchant_id`` nor ``terminal_id``; a merchant key takes an
    existing ``merchant_id`` and no ``terminal_id``; a terminal key takes an existing ``terminal_id`` and,
    if sent, that terminal's ``merchant_id``. An unknown id is ``<entity>_not_found``, any other mix is
    ``key_scope_invalid``; either way nothing is written.
    """
    if role not in ROLES:
        raise invalid("invalid_role", f"role must be one of {', '.join(ROLES)}.", {"role": role})
    if role == "admin" and (merchant_id is not None or terminal_id is not None):
        raise invalid("key_scope_invalid", "An admin key takes neither merchant_id nor terminal_id.")
    if role == "merchant" and terminal_id is not None:
        raise invalid("key_scope_invalid", "A merchant key takes no terminal_id; create a terminal key.")
    if role == "terminal":
        if terminal_id is None:
            raise invalid("terminal_required", "A terminal key needs terminal_id.")
        term = conn.execute(select(terminals.c.merchant_id).where(terminals.c.id == terminal_id)).first()
        if term is None or (merchant_id is not None and term.merchant_id != merchant_id):
            raise not_found("terminal", terminal_id)
        merchant_id = term.merchant_id
    elif role == "merchant":
        if merchant_id is None:
            raise invalid("merchant_required", "A merchant key needs merchant_id.")
        # Checked here rather than left to the foreign key, which would fail only at INSERT (a 500).
        if conn.execute(select(merchants.c.id).where(merchants.c.id == merchant_id)).first() is None:
            raise not_found("merchant", merchant_id)
    else:
        merchant_id = terminal_id = None
    secret = KEY_PREFIXES[role] + secrets.token_urlsafe(32)
    record = {
        "id": deps.ids.new(),
        "key_hash": hash_key(secret),
        "prefix": secret[:12],
        "role": role,
        "merchant_id": merchant_id,
        "terminal_id": terminal_id,
        "name": name,
        "created_at": deps.clock.now(),
        "revoked_at": None,
    }
    conn.execute(insert(api_keys).values(**record))
    return key_view(record), secret


def key_view(row: Any) -> KeyView:
    data = dict(row) if isinstance(row, dict) else dict(row._mapping)
    return {
        "id": data["id"],
        "prefix": data["prefix"],
        "role": data["role"],
        "merchant_id": data["merchant_id"],
        "terminal_id": data["terminal_id"],
        "name": data["name"],
        "created_at": iso(data["created_at"]),
        "revoked_at": iso(data["revoked_at"]),
    }


_AUTHENTICATE = (
    select(
        api_keys.c.id,
        api_keys.c.role,
        api_keys.c.merchant_id,
        api_keys.c.terminal_id,
        api_keys.c.revoked_at,
        terminals.c.store_id,
    )
    .select_from(api_keys.outerjoin(terminals, terminals.c.id == api_keys.c.terminal_id))
    .where(api_keys.c.key_hash == bindparam("key_hash"))
)


def authenticate(conn: Connection, secret: str) -> Actor:
    """Resolve a presented key to an Actor; unknown or revoked keys raise ``unauthenticated``."""
    return authenticate_hash(conn, hash_key(secret))


def authenticate_hash(conn: Connection, key_hash: str) -> Actor:
    """``authenticate`` for a key already hashed with ``hash_key``."""
    row = conn.execute(_AUTHENTICATE, {"key_hash": key_hash}).first()
    if row is None or row.revoked_at is not None:
        raise unauthenticated()
    return Actor(
        key_id=row.id,
        role=row.role,
        merchant_id=row.merchant_id,
        terminal_id=row.terminal_id,
        store_id=row.store_id,
    )


def unauthenticated() -> DomainError:
    return DomainError("unauthenticated", "The API key is unknown or revoked.", ErrorKind.UNAUTHENTICATED)


class KeyCache:
    """Keys a server accepted recently: key hash -> Actor, each for at most ``ttl_s`` seconds.

    Bounded (least recently used entries go first) and thread-safe. Only accepted keys are kept, so an
    unknown or revoked key is always looked up again. ``monotonic`` is injectable for tests.
    """

    def __init__(
        self,
        ttl_s: float = KEY_CACHE_TTL_S,
        max_entries: int = KEY_CACHE_MAX_ENTRIES,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self._monotonic = monotonic
        self._entries: OrderedDict[str, tuple[float, Actor]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key_hash: str) -> Actor | None:
        now = self._monotonic()
        with self._lock:
            entry = self._entries.get(key_hash)
            if entry is None:
                return None
            expires, actor = entry
            if now >= expires:
                del self._entries[key_hash]
                return None
            self._entries.move_to_end(key_hash)
            return actor

    def put(self, key_hash: str, actor: Actor) -> None:
        expires = self._monotonic() + self.ttl_s
        with self._lock:
            self._entries[key_hash] = (expires, actor)
            self._entries.move_to_end(key_hash)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)

    def forget(self, key_id: str) -> None:
        """Drop the key with this id (it was just revoked through this server)."""
        with self._lock:
            for key_hash in [h for h, (_, a) in self._entries.items() if a.key_id == key_id]:
                del self._entries[key_hash]

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def list_keys(conn: Connection, merchant_id: str | None = None) -> list[KeyView]:
    query = select(api_keys).order_by(api_keys.c.created_at, api_keys.c.id)
    if merchant_id is not None:
        query = query.where(api_keys.c.merchant_id == merchant_id)
    return [key_view(row) for row in conn.execute(query)]


def revoke_key(conn: Connection, deps: Deps, key_id: str) -> KeyView:
    row = conn.execute(select(api_keys).where(api_keys.c.id == key_id)).first()
    if row is None:
        raise not_found("api_key", key_id)
    if row.revoked_at is None:
        conn.execute(update(api_keys).where(api_keys.c.id == key_id).values(revoked_at=deps.clock.now()))
    fresh = conn.execute(select(api_keys).where(api_keys.c.id == key_id)).one()
    return key_view(fresh)
