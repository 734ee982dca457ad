"""Where the link key lives: one row of ``link_keys``, 32 random bytes made on first use (any process
may make it; the first insert wins and every process then reads the same key). Rotating it invalidates
every customer link already sent, so it is never rotated automatically."""

from __future__ import annotations

import secrets
import weakref

from sqlalchemy import Engine, insert, select
from sqlalchemy.exc import IntegrityError

from tillit.adapters.db.engine import Database
from tillit.adapters.db.schema import link_keys
from tillit.fulfilment.links import LinkSigner
from tillit.kernel.context import Deps

NAME = "customer_link"
_CACHE: weakref.WeakKeyDictionary[Engine, LinkSigner] = weakref.WeakKeyDictionary()  # per database


def signer_for(db: Database, deps: Deps) -> LinkSigner:
    """The signer for customer links on ``db`` (read once per Database, created when missing)."""
    cached = _CACHE.get(db.engine)
    if cached is not None:
        return cached
    with db.read() as conn:
        row = conn.execute(select(link_keys.c.key_hex).where(link_keys.c.name == NAME)).first()
    if row is None:
        try:
            with db.transaction() as conn:
                conn.execute(
                    insert(link_keys).values(
                        name=NAME, key_hex=secrets.token_hex(32), created_at=deps.clock.now()
                    )
                )
        except IntegrityError:
            pass  # another process made it first: use theirs
        with db.read() as conn:
            row = conn.execute(select(link_keys.c.key_hex).where(link_keys.c.name == NAME)).one()
    signer = LinkSigner(bytes.fromhex(row.key_hex))
    _CACHE[db.engine] = signer
    return signer
