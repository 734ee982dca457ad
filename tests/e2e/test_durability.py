"""A server killed with SIGKILL right after answering 201 still has the row after a restart."""

from __future__ import annotations

import signal
import uuid

import httpx

from tests.e2e.conftest import Env


def test_sigkill_after_201_keeps_the_sale(env: Env) -> None:
    keys = env.demo_keys()
    auth = {"Authorization": f"Bearer {keys['terminal_key']}"}
    proc, base = env.serve()
    try:
        order = httpx.post(
            f"{base}/v1/orders",
            json={"lines": [{"sku": "COF-LATTE", "quantity": 1}]},
            headers={**auth, "Idempotency-Key": uuid.uuid4().hex},
            timeout=10,
        )
        assert order.status_code == 201
        pay = httpx.post(
            f"{base}/v1/payments",
            json={"order_id": order.json()["id"], "tendered": 5000},
            headers={**auth, "Idempotency-Key": "pay-once"},
            timeout=10,
        )
        assert pay.status_code == 201
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
    proc, base = env.serve()
    try:
        got = httpx.get(f"{base}/v1/orders/{order.json()['id']}", headers=auth, timeout=10)
        assert got.status_code == 200 and got.json()["status"] == "paid"
        replay = httpx.post(
            f"{base}/v1/payments",
            json={"order_id": order.json()["id"], "tendered": 5000},
            headers={**auth, "Idempotency-Key": "pay-once"},
            timeout=10,
        )
        assert replay.content == pay.content and replay.headers["Idempotent-Replayed"] == "true"
    finally:
        proc.terminate()
        proc.wait(timeout=15)
    assert env.run("check").returncode == 0
