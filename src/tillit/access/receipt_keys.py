"""Receipt-link keys: what a terminal signs the QR on its paper receipts with, so the link works even
when the till printed it offline (domain/links.py ``till_receipt_*``).

- ``issue``: the terminal's active key (made on first call), fetched by the till at every settings
  refresh and kept in its journal. Only the key id is stored; the key is derived from the server key.
- ``revoke``: the manager retires a terminal's key (a lost or stolen till); every link it signed then
  answers 404, and the till gets a new key at its next refresh.
- ``resolve``: the order a printed link names, or None for a forged, altered or revoked one.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass

from sqlalchemy import Connection, insert, select, update
from sqlalchemy.exc import IntegrityError

from tillit.adapters.db.schema import receipt_link_keys, terminals
from tillit.domain.errors import DomainError, ErrorKind, not_found
from tillit.domain.links import check_till_receipt_mac, till_receipt_key
from tillit.kernel.context import Actor, Deps

HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True, slots=True)
class IssuedKey:
    key_id: str
    key: str  # base64url, the 32 bytes the till signs with
    terminal_id: str


@dataclass(frozen=True, slots=True)
class LinkedOrder:
    merchant_id: str
    terminal_id: str
    order_id: str


def _active(conn: Connection, terminal_id: str) -> str | None:
    return conn.execute(
        select(receipt_link_keys.c.id).where(
            receipt_link_keys.c.terminal_id == terminal_id, receipt_link_keys.c.revoked_at.is_(None)
        )
    ).scalar_one_or_none()


def issue(conn: Connection, deps: Deps, actor: Actor, server_key: bytes) -> IssuedKey:
    """The calling terminal's active receipt-link key, made when it has none (one per terminal: the
    partial unique index lets only one insert win)."""
    if actor.terminal_id is None or actor.merchant_id is None:
        raise DomainError("forbidden", "Only a terminal key has a receipt-link key.", ErrorKind.FORBIDDEN)
    key_id = _active(conn, actor.terminal_id)
    if key_id is None:
        key_id = deps.ids.new()
        try:
            with conn.begin_nested():
                conn.execute(
                    insert(receipt_link_keys).values(
                        id=key_id,
                        merchant_id=actor.merchant_id,
                        terminal_id=actor.terminal_id,
                        created_at=deps.clock.now(),
                    )
                )
        except IntegrityError:  # another request of this terminal made it first
            key_id = _active(conn, actor.terminal_id)
            assert key_id is not None
    key = base64.urlsafe_b64encode(till_receipt_key(server_key, key_id)).decode().rstrip("=")
    return IssuedKey(key_id=key_id, key=key, terminal_id=actor.terminal_id)


def revoke(conn: Connection, deps: Deps, merchant_id: str, terminal_id: str) -> int:
    """Retire the terminal's active key; returns how many keys were revoked (0 when it had none).
    Another merchant's terminal answers 404 like an unknown one."""
    found = conn.execute(
        select(terminals.c.id).where(terminals.c.merchant_id == merchant_id, terminals.c.id == terminal_id)
    ).first()
    if found is None:
        raise not_found("terminal", terminal_id)
    done = conn.execute(
        update(receipt_link_keys)
        .where(
            receipt_link_keys.c.merchant_id == merchant_id,
            receipt_link_keys.c.terminal_id == terminal_id,
            receipt_link_keys.c.revoked_at.is_(None),
        )
        .values(revoked_at=deps.clock.now())
    )
    return int(done.rowcount or 0)


def _is_id(text: str) -> bool:
    return len(text) == 32 and set(text) <= HEX


def resolve(conn: Connection, server_key: bytes, key_id: str, order_id: str, mac: str) -> LinkedOrder | None:
    """The order a printed receipt link names, or None (malformed, unknown or revoked key, bad mac)."""
    if not (_is_id(key_id) and _is_id(order_id) and _is_id(mac)):
        return None
    row = conn.execute(
        select(receipt_link_keys.c.merchant_id, receipt_link_keys.c.terminal_id).where(
            receipt_link_keys.c.id == key_id, receipt_link_keys.c.revoked_at.is_(None)
        )
    ).first()
    # The mac is checked even for an unknown key (against a key no terminal holds): the same work either way.
    key = till_receipt_key(server_key, key_id)
    if not check_till_receipt_mac(key, order_id, mac) or row is None:
        return None
    return LinkedOrder(merchant_id=row.merchant_id, terminal_id=row.terminal_id, order_id=order_id)
