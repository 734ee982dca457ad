"""The fast write path keeps its answers and semantics: the order answer built from the values written,
batched stock updates, the API key cache (revocation within its TTL) and SQLite's in-process write lock."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, text, update

from tests.support.api import new_order, pay_cash, post
from tests.support.world import Tenant, make_admin_key
from tillit.access import keys
from tillit.access.keys import KEY_CACHE_TTL_S, KeyCache
from tillit.adapters.db.schema import api_keys, products
from tillit.api.app import create_app
from tillit.bootstrap import Container, build
from tillit.domain.clock import ManualClock
from tillit.kernel.context import Actor


class FakeMonotonic:
    """A monotonic clock that moves only when told to: no test here sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _fresh_read(client: TestClient, tenant: Tenant, order_id: str) -> dict[str, object]:
    r = client.get(f"/v1/orders/{order_id}", headers=tenant.auth())
    assert r.status_code == 200, r.text
    return dict(r.json())


@pytest.mark.parametrize(
    "offset_hours", [0, 8], ids=["utc-clock", "utc+8-clock"]
)  # SQLite keeps no zone: the answer must say what a read gives back
def test_created_order_answer_equals_a_fresh_read(
    container: Container, tenant: Tenant, offset_hours: int
) -> None:
    # The real time (other tests on this shared database prune by it), in the clock's own zone.
    start = datetime.now(UTC).astimezone(timezone(timedelta(hours=offset_hours))).replace(microsecond=123456)
    c = build(container.settings, clock=ManualClock(start))
    try:
        with TestClient(create_app(c), raise_server_exceptions=False) as client:
            latte = tenant.products["LATTE"]["id"]
            bodies = [
                {
                    "lines": [
                        {"sku": "LATTE", "quantity": 2},
                        {"sku": "CROIS", "quantity": 1, "discount": 500},
                    ]
                },
                {
                    "id": str(uuid.uuid4()),
                    "note": "table 4 — 无糖",
                    "lines": [
                        {"product_id": latte, "quantity": 1},
                        {"sku": "WATER", "quantity": 3},
                        {"sku": "LATTE", "quantity": 2, "discount": 100},
                    ],
                },
                {"lines": [{"sku": "WATER", "quantity": 1, "discount": 300}]},  # zero total: paid at once
            ]
            for body in bodies:
                r = post(client, "/v1/orders", body, tenant)
                assert r.status_code == 201, r.text
                assert r.json() == _fresh_read(client, tenant, r.json()["id"])
            free = r.json()
            assert free["status"] == "paid" and free["version"] == 2 and free["balance_due"] == 0
    finally:
        c.db.dispose()


def test_stock_taken_once_per_product_and_untracked_stock_left_alone(
    client: TestClient, container: Container, tenant: Tenant
) -> None:
    def stock(sku: str) -> int | None:
        with container.db.read() as conn:
            value = conn.execute(
                select(products.c.stock).where(products.c.id == tenant.products[sku]["id"])
            ).scalar_one()
            return None if value is None else int(value)

    before = {sku: stock(sku) for sku in ("LATTE", "CROIS", "WATER")}
    order = new_order(
        client,
        tenant,
        [
            {"sku": "WATER", "quantity": 2},
            {"sku": "CROIS", "quantity": 1},
            {"sku": "LATTE", "quantity": 1},
            {"sku": "WATER", "quantity": 3},
        ],
    )
    assert stock("WATER") == before["WATER"]  # nothing is taken before the order is paid
    pay_cash(client, tenant, order["id"], amount=100)
    assert stock("WATER") == before["WATER"]  # ... nor while it is partly paid
    pay_cash(client, tenant, order["id"])
    assert before["LATTE"] is not None and before["WATER"] is not None
    assert stock("LATTE") == before["LATTE"] - 1
    assert stock("WATER") == before["WATER"] - 5
    assert before["CROIS"] is None and stock("CROIS") is None
    paid = _fresh_read(client, tenant, order["id"])
    assert paid["status"] == "paid" and paid["paid_amount"] == paid["total"] and paid["version"] == 3


def test_key_revoked_elsewhere_is_refused_once_the_cache_ttl_has_passed(
    container: Container, tenant: Tenant
) -> None:
    clock = FakeMonotonic()
    cache = KeyCache(monotonic=clock)
    with TestClient(create_app(container, key_cache=cache), raise_server_exceptions=False) as client:
        assert client.get("/v1/orders", headers=tenant.auth()).status_code == 200
        # Revoked by another process (`tillit keys revoke`): this server cannot be told.
        with container.db.transaction() as conn:
            conn.execute(
                update(api_keys)
                .where(api_keys.c.key_hash == keys.hash_key(tenant.cashier_key))
                .values(revoked_at=datetime.now(UTC))
            )
        clock.now += KEY_CACHE_TTL_S - 0.001
        assert client.get("/v1/orders", headers=tenant.auth()).status_code == 200  # the documented delay
        clock.now += 0.001
        r = client.get("/v1/orders", headers=tenant.auth())
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthenticated"
        clock.now += 3600  # and it stays refused: refusals are never cached as acceptances
        assert (
            post(client, "/v1/orders", {"lines": [{"sku": "LATTE", "quantity": 1}]}, tenant).status_code
            == 401
        )


def test_key_revoked_through_this_server_is_refused_at_once(container: Container, tenant: Tenant) -> None:
    clock = FakeMonotonic()
    admin = {"Authorization": f"Bearer {make_admin_key(container)}"}
    with TestClient(
        create_app(container, key_cache=KeyCache(monotonic=clock)), raise_server_exceptions=False
    ) as client:
        assert client.get("/v1/orders", headers=tenant.auth("merchant")).status_code == 200
        listed = client.get("/v1/api-keys", params={"merchant_id": tenant.merchant_id}, headers=admin).json()
        manager = next(k for k in listed["data"] if k["role"] == "merchant")
        r = client.post(f"/v1/api-keys/{manager['id']}/revoke", headers=admin)
        assert r.status_code == 200 and r.json()["revoked_at"] is not None
        r = client.get("/v1/orders", headers=tenant.auth("merchant"))  # no clock movement at all
        assert r.status_code == 401
        assert client.get("/v1/orders", headers=tenant.auth()).status_code == 200  # the cashier's key lives


def test_key_cache_is_bounded_and_expires() -> None:
    clock = FakeMonotonic()
    cache = KeyCache(ttl_s=5.0, max_entries=3, monotonic=clock)
    actors = {f"h{i}": Actor(key_id=f"k{i}", role="terminal", merchant_id="m") for i in range(4)}
    for h in ("h0", "h1", "h2"):
        cache.put(h, actors[h])
    assert cache.get("h0") == actors["h0"]  # h0 is now the most recently used
    cache.put("h3", actors["h3"])  # evicts h1, the least recently used
    assert cache.get("h1") is None
    assert [cache.get(h) for h in ("h0", "h2", "h3")] == [actors["h0"], actors["h2"], actors["h3"]]
    cache.forget("k2")
    assert cache.get("h2") is None
    clock.now += 5.0
    assert cache.get("h0") is None and cache.get("h3") is None


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)  # SQLite's own write lock
def test_sqlite_writers_of_one_process_queue_on_the_write_lock(container: Container, backend: str) -> None:
    with container.db.transaction() as conn:
        conn.execute(text("CREATE TABLE IF NOT EXISTS lock_probe (n INTEGER NOT NULL)"))
        conn.execute(text("DELETE FROM lock_probe"))
        conn.execute(text("INSERT INTO lock_probe (n) VALUES (0)"))
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            for _ in range(25):
                with container.db.transaction() as conn:
                    n = conn.execute(text("SELECT n FROM lock_probe")).scalar_one()
                    conn.execute(text("UPDATE lock_probe SET n = :n"), {"n": n + 1})
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=writer) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    # A failed transaction rolls back and frees the lock for the next writer.
    with pytest.raises(RuntimeError), container.db.transaction() as conn:
        conn.execute(text("UPDATE lock_probe SET n = -1"))
        raise RuntimeError("boom")
    with container.db.transaction() as conn:
        assert conn.execute(text("SELECT n FROM lock_probe")).scalar_one() == 8 * 25
        conn.execute(text("DROP TABLE lock_probe"))
