"""docs/payments.md works as written: a sandbox from `init-config`, `tillit providers connect-sandbox`,
then a cashier pays by WeChat and by Alipay code through the API, and refunds."""

from __future__ import annotations

import subprocess
import time
import uuid
from pathlib import Path

import httpx
import pytest

from tests.e2e.conftest import TILLIT, Env
from tests.support.live import free_port


@pytest.mark.parametrize("env", ["sqlite"], indirect=True)
def test_pay_by_code_as_documented(env: Env, tmp_path: Path) -> None:
    sandbox_dir = tmp_path / "sbx"
    sandbox_dir.mkdir()
    subprocess.run(
        [*TILLIT, "sandbox", "init-config"],
        cwd=sandbox_dir,
        env=env.vars,
        check=True,
        capture_output=True,
        timeout=60,
    )
    sbx_port = free_port()
    sandbox = subprocess.Popen(
        [*TILLIT, "sandbox", "--port", str(sbx_port)],
        cwd=sandbox_dir,
        env=env.vars,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    sbx = f"http://127.0.0.1:{sbx_port}"
    keys = env.demo_keys()
    proc, api = env.serve()
    try:
        for _ in range(100):
            try:
                if httpx.get(sbx + "/sandbox/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        env.run(
            "providers",
            "connect-sandbox",
            "--merchant-id",
            keys["merchant_id"],
            "--config",
            str(sandbox_dir / "sandbox.toml"),
            "--sandbox-url",
            sbx,
            "--notify-base",
            api,
        )
        auth = {"Authorization": f"Bearer {keys['terminal_key']}"}
        with httpx.Client(base_url=api, headers=auth, timeout=20) as http:
            for wallet, provider in ((1, "wechat"), (2, "alipay")):
                code = httpx.post(f"{sbx}/sandbox/wallets/{wallet}/codes").json()["code"]
                order = http.post(
                    "/v1/orders",
                    json={"lines": [{"sku": "COF-LATTE", "quantity": 1}]},
                    headers={"Idempotency-Key": uuid.uuid4().hex},
                ).json()
                pay = http.post(
                    "/v1/payments",
                    json={"order_id": order["id"], "payment_code": code},
                    headers={"Idempotency-Key": uuid.uuid4().hex},
                )
                assert pay.status_code == 201, pay.text
                body = pay.json()
                assert (body["status"], body["method"], body["message"]["reason"]) == (
                    "captured",
                    provider,
                    "paid",
                )
                refund = http.post(
                    "/v1/refunds",
                    json={"payment_id": body["id"], "amount": 1000},
                    headers={"Idempotency-Key": uuid.uuid4().hex},
                )
                assert refund.status_code in (201, 202), refund.text
                ledger = httpx.get(f"{sbx}/sandbox/wallets/{wallet}/ledger").json()
                assert ledger["total_debited_fen"] == 2800
    finally:
        proc.terminate()
        sandbox.terminate()
        proc.wait(15)
        sandbox.wait(15)
