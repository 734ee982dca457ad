"""In-flight Idempotency-Keys are held by a process (its boot id) under a lease it renews (issue 16.1).

Two ``Deps`` with their own ``KeyHolder`` stand for two processes on one database (both backends); the
first request's provider call waits on an event, so "still running" and "died" are both under control.
"""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from tests.support.world import Tenant
from tillit.access import idempotency
from tillit.access.idempotency import StoredResponse
from tillit.adapters.db.schema import idempotency_keys
from tillit.bootstrap import Container
from tillit.domain.clock import ManualClock
from tillit.domain.errors import DomainError
from tillit.domain.ids import IdGenerator
from tillit.kernel.context import Actor, Deps, KeyHolder

LEASE = timedelta(seconds=5)


def process(clock: ManualClock) -> Deps:
    return Deps(clock=clock, ids=IdGenerator(clock), holder=KeyHolder(lease=LEASE))


def request(c: Container, deps: Deps, tenant: Tenant, key: str, gate: threading.Event | None = None) -> Any:
    actor = Actor(key_id="k", role="merchant", merchant_id=tenant.merchant_id)

    def run() -> str:
        if gate is not None:
            assert gate.wait(20)
        return "answered"

    return idempotency.run_phased(
        c.db,
        deps,
        actor,
        key,
        "POST",
        "/v1/payments",
        {"order_id": "o"},
        lambda conn: idempotency.Call("res-1", run, lambda conn, answer: (201, {"from": "first"})),
        lambda conn, rid: (201, {"from": "takeover", "resource": rid}),
    )


def start_first(
    c: Container, deps: Deps, tenant: Tenant, key: str
) -> tuple[threading.Event, threading.Thread, list[Any]]:
    """Start a first request in a thread; return once it holds its key and waits in its call."""
    gate, result = threading.Event(), list[Any]()
    thread = threading.Thread(target=lambda: result.append(request(c, deps, tenant, key, gate)), daemon=True)
    thread.start()
    for _ in range(200):
        if deps.holder.held == 1:
            break
        threading.Event().wait(0.01)
    assert deps.holder.held == 1, "the first request never reached its call"
    return gate, thread, result


def held_row(c: Container, tenant: Tenant, key: str) -> Any:
    with c.db.read() as conn:
        return conn.execute(
            select(idempotency_keys).where(
                idempotency_keys.c.scope == tenant.merchant_id, idempotency_keys.c.key == key
            )
        ).one()


def test_a_live_holder_keeps_its_key_and_a_dead_ones_lease_runs_out(
    container: Container, tenant: Tenant
) -> None:
    clock = ManualClock()
    first, second = process(clock), process(clock)
    gate, thread, result = start_first(container, first, tenant, "lease-1")
    row = held_row(container, tenant, "lease-1")
    assert row.holder == first.holder.boot and row.lease_until == clock.now() + LEASE
    with pytest.raises(DomainError) as refused:
        request(container, second, tenant, "lease-1")
    assert refused.value.code == "idempotency_key_in_flight"

    clock.advance(4)  # the holder renews while its call runs: still held after the first lease
    with container.db.transaction() as conn:
        assert idempotency.renew_leases(conn, first.holder, clock.now()) == 1
    clock.advance(4)
    with pytest.raises(DomainError):
        request(container, second, tenant, "lease-1")

    clock.advance(LEASE.total_seconds())  # no renewal: as if the first process had died
    taken: StoredResponse = request(container, second, tenant, "lease-1")
    assert taken.replayed and b'"takeover"' in taken.body
    gate.set()
    thread.join(10)
    late: StoredResponse = result[0]
    assert late.status == 201 and b'"first"' in late.body
    # The first final answer stored wins: every later replay is byte-identical to the takeover's.
    again: StoredResponse = request(container, second, tenant, "lease-1")
    assert again.replayed and again.body == taken.body


def test_a_starting_process_frees_the_keys_of_earlier_boots(container: Container, tenant: Tenant) -> None:
    clock = ManualClock()
    dead, fresh = process(clock), process(clock)
    gate, thread, _ = start_first(container, dead, tenant, "lease-2")
    with container.db.transaction() as conn:
        assert idempotency.free_gone_holders(conn, fresh.holder, clock.now()) >= 1
        assert idempotency.renew_leases(conn, fresh.holder, clock.now()) == 0  # it holds none itself
    taken = request(container, fresh, tenant, "lease-2")
    assert taken.replayed and b'"takeover"' in taken.body  # no wait at all
    gate.set()
    thread.join(10)


def test_the_renewer_writes_only_while_keys_are_held(container: Container, tenant: Tenant) -> None:
    clock = ManualClock()
    deps = process(clock)
    renewer = idempotency.LeaseRenewer(container.db, deps, every=0.02)
    renewer.start()
    try:
        gate, thread, _ = start_first(container, deps, tenant, "lease-3")
        before = held_row(container, tenant, "lease-3").lease_until
        clock.advance(3)
        for _ in range(200):
            if held_row(container, tenant, "lease-3").lease_until > before:
                break
            threading.Event().wait(0.01)
        assert held_row(container, tenant, "lease-3").lease_until == clock.now() + LEASE
        gate.set()
        thread.join(10)
        done = held_row(container, tenant, "lease-3")
        assert done.status == "done" and done.holder is None and done.lease_until is None
    finally:
        renewer.stop()
