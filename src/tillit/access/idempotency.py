"""Idempotency keys for every POST that creates something or moves money.

Contract (after the IETF idempotency-key draft and Stripe):
- same key and same request -> the first response is replayed byte for byte (``replayed=True``);
- same key, different request (method, path or body) -> 422 ``idempotency_key_reused``;
- same key while its first request is still running -> 409 ``idempotency_key_in_flight``; a key whose
  holding process died is taken over as soon as its lease has passed (``run_phased``);
- keys are scoped per merchant ('admin' for operator keys) and kept at least ``retention`` (24 h by
  default), then removed by ``prune``.

A local operation stores its response in the same transaction as its business rows, so the key and
the effect commit together or not at all: a request that fails writes nothing and its key stays
free. Errors are therefore not replayed; a retry after fixing the cause may reuse the key.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog
from sqlalchemy import Connection, bindparam, delete, insert, or_, select, update

from tillit.adapters.db.engine import Database
from tillit.adapters.db.schema import idempotency_keys
from tillit.domain.errors import DomainError, ErrorKind, conflict, invalid
from tillit.kernel.context import Actor, Deps, KeyHolder

log = structlog.get_logger("tillit.idempotency")

MAX_KEY_LENGTH = 255
DEFAULT_RETENTION = timedelta(hours=24)
# A key held before leases existed (no lease_until) is taken to have died after this long.
IN_FLIGHT_TIMEOUT = timedelta(seconds=90)

# Built once: every money-moving request runs these, and building a statement costs more than running it.
_FIND_KEY = select(idempotency_keys).where(
    idempotency_keys.c.scope == bindparam("b_scope"), idempotency_keys.c.key == bindparam("b_key")
)
_INSERT_KEY = insert(idempotency_keys)


@dataclass(frozen=True, slots=True)
class StoredResponse:
    status: int
    body: bytes
    replayed: bool


def check_key(key: str | None) -> str:
    if key is None or key == "":
        raise DomainError(
            "idempotency_key_missing",
            "This request moves money or creates something: send an Idempotency-Key header.",
            ErrorKind.INVALID,
        )
    if len(key) > MAX_KEY_LENGTH or not key.isascii() or not key.isprintable():
        raise invalid(
            "idempotency_key_invalid",
            f"Idempotency-Key must be 1-{MAX_KEY_LENGTH} printable ASCII characters.",
        )
    return key


def request_hash(method: str, path: str, body: Any) -> str:
    canonical = json.dumps([method, path, body], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def encode(body: Any) -> bytes:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def done_record(
    scope: str, key: str, method: str, path: str, digest: str, status: int, payload: bytes, now: datetime
) -> dict[str, Any]:
    """The idempotency_keys row of a request answered at once (``run_in``, ``run_phased`` and the bulk
    sync store the same row)."""
    return {
        "scope": scope,
        "key": key,
        "method": method,
        "path": path,
        "request_hash": digest,
        "status": "done",
        "response_status": status,
        "response_body": payload.decode(),
        "created_at": now,
        "locked_at": None,
    }


def run(
    db: Database,
    deps: Deps,
    actor: Actor,
    key: str | None,
    method: str,
    path: str,
    body: Any,
    operation: Callable[[Connection], tuple[int, Any]],
) -> StoredResponse:
    """Run ``operation`` once per key: in one transaction claim the key, do the work, store the answer."""
    with db.transaction() as conn:
        return run_in(conn, db, deps, actor, key, method, path, body, operation)


def _existing(conn: Connection, db: Database, scope: str, key: str, digest: str) -> Any:
    """Lock ``key`` for this transaction and return its row, or None for a new key. The same key with a
    different request is refused; a key whose first request holds the lock right now is 409."""
    if not db.try_advisory_lock(conn, f"idem:{scope}:{key}"):
        raise _in_flight()
    row = conn.execute(_FIND_KEY, {"b_scope": scope, "b_key": key}).first()
    if row is not None and row.request_hash != digest:
        raise DomainError(
            "idempotency_key_reused",
            "This Idempotency-Key was used for a different request; use a new key.",
            ErrorKind.INVALID,
            {"first_path": row.path},
        )
    return row


def run_in(
    conn: Connection,
    db: Database,
    deps: Deps,
    actor: Actor,
    key: str | None,
    method: str,
    path: str,
    body: Any,
    operation: Callable[[Connection], tuple[int, Any]],
) -> StoredResponse:
    """``run`` inside the caller's transaction (a batch applies many keyed requests in one commit)."""
    key = check_key(key)
    scope = actor.merchant_id or "admin"
    digest = request_hash(method, path, body)
    row = _existing(conn, db, scope, key, digest)
    now = deps.clock.now()
    if row is not None:
        if row.status == "done":
            return StoredResponse(row.response_status, row.response_body.encode(), True)
        raise _in_flight()
    status, result = operation(conn)
    payload = encode(result)
    conn.execute(_INSERT_KEY, done_record(scope, key, method, path, digest, status, payload, now))
    return StoredResponse(status, payload, False)


@dataclass
class Call:
    """Phase 2 and 3 of a request that calls a provider: ``run`` makes the call outside any transaction,
    ``finish`` records its answer in a new one and returns the response."""

    resource_id: str
    run: Callable[[], Any]
    finish: Callable[[Connection, Any], tuple[int, Any]]


def run_phased(
    db: Database,
    deps: Deps,
    actor: Actor,
    key: str | None,
    method: str,
    path: str,
    body: Any,
    prepare: Callable[[Connection], tuple[int, Any] | Call],
    takeover: Callable[[Connection, str], tuple[int, Any]],
) -> StoredResponse:
    """Like ``run``, for requests that may call a provider (atomic phases, after Brandur).

    Phase 1 claims the key as ``in_flight`` (linked to the resource it creates) in the same transaction
    as the resource, held by this process (``deps.holder.boot``) with a lease that ``LeaseRenewer``
    extends while the call runs; the provider call happens outside any transaction; phase 3 records the
    answer and the response. A same-key request while the lease holds gets 409. Once it has passed (the
    holding process died mid-call, or a starting process freed the keys of boots that are gone), the key
    is taken over: ``takeover`` answers from the resource's current state, which the recovery jobs keep
    moving (it never re-sends the call), and the answer is stored once that state is final (not 202).
    """
    key = check_key(key)
    scope = actor.merchant_id or "admin"
    digest = request_hash(method, path, body)
    with db.transaction() as conn:
        row = _existing(conn, db, scope, key, digest)
        now = deps.clock.now()
        if row is not None:
            if row.status == "done":
                return StoredResponse(row.response_status, row.response_body.encode(), True)
            if _still_held(row, now):
                raise _in_flight()
            status, result = takeover(conn, row.resource_id)
            payload = encode(result)
            if status != 202:
                conn.execute(
                    update(idempotency_keys)
                    .where(idempotency_keys.c.id == row.id)
                    .values(status="done", response_status=status, response_body=payload.decode())
                )
            return StoredResponse(status, payload, True)
        outcome = prepare(conn)
        if not isinstance(outcome, Call):
            status, result = outcome
            payload = encode(result)
            conn.execute(_INSERT_KEY, done_record(scope, key, method, path, digest, status, payload, now))
            return StoredResponse(status, payload, False)
        conn.execute(
            _INSERT_KEY,
            {
                "scope": scope,
                "key": key,
                "method": method,
                "path": path,
                "request_hash": digest,
                "status": "in_flight",
                "created_at": now,
                "locked_at": now,
                "resource_id": outcome.resource_id,
                "holder": deps.holder.boot,
                "lease_until": now + deps.holder.lease,
            },
        )
    deps.holder.hold()
    try:
        answer = outcome.run()
    finally:
        deps.holder.release()
    with db.transaction() as conn:
        status, result = outcome.finish(conn, answer)
        payload = encode(result)
        # Only while still in flight: a takeover that already stored a final answer keeps its bytes.
        conn.execute(
            update(idempotency_keys)
            .where(
                idempotency_keys.c.scope == scope,
                idempotency_keys.c.key == key,
                idempotency_keys.c.status == "in_flight",
            )
            .values(
                status="done",
                response_status=status,
                response_body=payload.decode(),
                locked_at=None,
                holder=None,
                lease_until=None,
            )
        )
    return StoredResponse(status, payload, False)


def _aware(value: datetime, now: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=now.tzinfo)


def _still_held(row: Any, now: datetime) -> bool:
    """Is an in-flight key's first request (taken to be) still running?"""
    if row.lease_until is not None:
        return now < _aware(row.lease_until, now)
    return now - _aware(row.locked_at, now) < IN_FLIGHT_TIMEOUT


def renew_leases(conn: Connection, holder: KeyHolder, now: datetime) -> int:
    """Extend the lease of every key this process holds; returns how many."""
    result = conn.execute(
        update(idempotency_keys)
        .where(idempotency_keys.c.holder == holder.boot, idempotency_keys.c.status == "in_flight")
        .values(lease_until=now + holder.lease)
    )
    return int(result.rowcount or 0)


def free_gone_holders(conn: Connection, holder: KeyHolder, now: datetime) -> int:
    """End the hold of every in-flight key not held by this process: for a starting process that knows it
    is the only one (SQLite serves from one API process), every earlier boot is gone. Returns how many."""
    result = conn.execute(
        update(idempotency_keys)
        .where(
            idempotency_keys.c.status == "in_flight",
            or_(idempotency_keys.c.holder.is_(None), idempotency_keys.c.holder != holder.boot),
        )
        .values(lease_until=now)
    )
    return int(result.rowcount or 0)


class LeaseRenewer:
    """A daemon thread that renews this process's key leases every ``every`` real seconds while it holds
    any (it writes nothing otherwise). Stopping the process stops the renewals: that is the point."""

    def __init__(self, db: Database, deps: Deps, every: float) -> None:
        self.db, self.deps, self.every = db, deps, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="key-lease-renewer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)

    def _loop(self) -> None:
        while not self._stop.wait(self.every):
            if self.deps.holder.held <= 0:
                continue
            try:
                with self.db.transaction() as conn:
                    renew_leases(conn, self.deps.holder, self.deps.clock.now())
            except Exception:  # a busy database must not kill the renewer: the next beat tries again
                log.warning("key_lease_renewal_failed", exc_info=True)


def _in_flight() -> DomainError:
    return conflict(
        "idempotency_key_in_flight",
        "A request with this Idempotency-Key is still being processed; retry shortly with the same key.",
    )


def prune(conn: Connection, now: datetime, retention: timedelta = DEFAULT_RETENTION) -> int:
    """Delete finished keys older than ``retention`` (never less than 24 h); returns how many."""
    retention = max(retention, DEFAULT_RETENTION)
    result = conn.execute(
        delete(idempotency_keys).where(
            idempotency_keys.c.created_at < now - retention, idempotency_keys.c.status == "done"
        )
    )
    return int(result.rowcount or 0)
