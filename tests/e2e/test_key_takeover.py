"""Issue 16.1: a server killed during a provider payment does not hold the till's resend for 90 s.

A real `tillit serve` process pays through the sandbox; the sandbox holds the pay call open, the server
is killed with SIGKILL in the middle of it and started again, and the till resends with the same
Idempotency-Key. The resend is answered (from the attempt's state, never by paying again) as soon as the
dead process's lease on the key has passed — at once on SQLite, where a starting server knows every
earlier boot is gone — and the engine settles the attempt by query.
"""

from __future__ import annotations

import base64
import contextlib
import os
import secrets
import signal
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from tests.e2e.conftest import TILLIT
from tests.support import pg
from tests.support.live import free_port
from tests.support.sandbox import Accounts, running_sandbox
from tests.support.sandbox import provider_accounts as account_settings
from tests.support.world import make_tenant
from tillit.adapters.db import migrate
from tillit.adapters.db.schema import payments
from tillit.bootstrap import Container, build
from tillit.config import Settings
from tillit.payments import accounts as provider_accounts
from tillit.sandbox.clock import SandboxClock

LEASE_S = 2.0  # TILLIT_KEY_LEASE_S for the server: short, so the PostgreSQL case stays quick


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'home' / 'tillit.sqlite'}"
        return
    # A database of its own: this test's home has its own secret key, and the run's shared database
    # may hold provider secrets sealed with the shared home's key.
    url = pg.create_database("tillit_takeover")
    try:
        yield url
    finally:
        pg.drop_database(url)


def serve(env: dict[str, str], log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [*TILLIT, "serve", "--port", str(port), "--no-access-log"],
        env=env,
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/healthz", timeout=1).status_code == 200:
                return proc, base
        except httpx.HTTPError:
            time.sleep(0.05)
    proc.kill()
    raise AssertionError(log.read_text(errors="replace")[-2000:])


def test_resend_after_a_crash_mid_payment_is_answered_at_once(database: str, tmp_path: Path) -> None:
    home = tmp_path / "home"
    secret_key = base64.b64encode(secrets.token_bytes(32)).decode()
    c = build(Settings(home=home, database_url=database, secret_key=secret_key))
    migrate.upgrade(c.db)
    accounts = Accounts.fresh()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TILLIT_")}
    env |= {
        "TILLIT_HOME": str(home),
        "TILLIT_DATABASE_URL": database,
        "TILLIT_SECRET_KEY": secret_key,
        "TILLIT_PROVIDER_TIMEOUT_S": "20",  # the pay call is still open when the server dies
        "TILLIT_KEY_LEASE_S": str(LEASE_S),
    }
    log = tmp_path / "server.log"
    with running_sandbox(tmp_path / "sandbox", accounts, clock=SandboxClock(speed=1)) as sbx:
        tenant = make_tenant(c, f"Takeover {uuid.uuid4().hex[:8]}")
        with c.db.transaction() as conn:
            for provider, settings in account_settings(accounts, sbx.url).items():
                provider_accounts.set_account(conn, c.deps, tenant.merchant_id, provider, settings)
        wallet = sbx.wallet("wechat")
        proc, base = serve(env, log)
        auth = tenant.auth()
        try:
            order = httpx.post(
                f"{base}/v1/orders",
                json={"lines": [{"sku": "LATTE", "quantity": 1}]},
                headers={**auth, "Idempotency-Key": uuid.uuid4().hex},
            ).json()
            body = {"order_id": order["id"], "payment_code": sbx.code(wallet)}
            headers = {**auth, "Idempotency-Key": "pay-" + uuid.uuid4().hex}
            sbx.faults({"wechat.micropay": {"hang": 1.0}}, hang_seconds=4)
            first = threading.Thread(target=_post_until_killed, args=(base, body, headers), daemon=True)
            first.start()
            attempt_id = _wait_for_attempt(c, tenant.merchant_id, order["id"])
            time.sleep(0.3)  # the pay call is now open at the sandbox
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            sbx.faults({})
            proc, base = serve(env, log)
            up = time.monotonic()
            answers = []
            while True:
                r = httpx.post(f"{base}/v1/payments", json=body, headers=headers, timeout=10)
                answers.append(r.status_code)
                if r.status_code != 409 or time.monotonic() - up > 30:
                    break
                time.sleep(0.1)
            waited = time.monotonic() - up
            assert r.status_code in (201, 202), (r.status_code, r.text)
            assert r.json()["id"] == attempt_id  # the same attempt, answered from its state
            if database.startswith("sqlite"):
                assert answers == [r.status_code], "SQLite frees an earlier boot's keys when it starts"
            assert waited <= LEASE_S + 2, f"resend answered {waited:.1f} s after the server was back"
            # The engine settles the attempt by query; pay was sent once, so at most one debit.
            deadline = time.monotonic() + 40
            final = r.json()
            while final["status"] not in ("captured", "failed") and time.monotonic() < deadline:
                time.sleep(0.25)
                final = httpx.get(f"{base}/v1/payments/{attempt_id}", headers=auth).json()
            assert final["status"] in ("captured", "failed"), final
            debited = sbx.net_debited(wallet)
            assert debited == (order["total"] if final["status"] == "captured" else 0)
            replay = httpx.post(f"{base}/v1/payments", json=body, headers=headers)
            assert replay.json()["id"] == attempt_id
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            c.db.dispose()
    with c.db.read() as conn:
        rows = conn.execute(select(payments.c.id).where(payments.c.order_id == order["id"])).all()
    assert [row.id for row in rows] == [attempt_id]  # never a second attempt for the resend


def _post_until_killed(base: str, body: dict[str, str], headers: dict[str, str]) -> None:
    with contextlib.suppress(httpx.HTTPError):  # the server dies under it: that is the point
        httpx.post(f"{base}/v1/payments", json=body, headers=headers, timeout=30)


def _wait_for_attempt(c: Container, merchant_id: str, order_id: str) -> str:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with c.db.read() as conn:
            row = conn.execute(
                select(payments.c.id).where(
                    payments.c.merchant_id == merchant_id, payments.c.order_id == order_id
                )
            ).first()
        if row is not None:
            return str(row.id)
        time.sleep(0.05)
    raise AssertionError("the payment attempt was never written")
