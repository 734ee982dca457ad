"""Structured logs of a real run (`tillit serve` and the sandbox as processes, real HTTP): every Tillit log
line that names a request carries its id, the id reaches the provider call and the recovery job it
scheduled, and the whole log output holds none of the payment codes or secrets the run used."""

from __future__ import annotations

import json
import time
import tomllib
import uuid
from pathlib import Path
from typing import Any

import httpx

from tests.e2e.stack import demo_stack
from tests.support.sandbox import SandboxControl


def _lines(path: Path) -> list[dict[str, Any]]:
    out = []
    for raw in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            out.append(json.loads(raw))
        except ValueError:
            continue
    return out


def test_logs_carry_request_ids_and_no_codes_or_secrets(tmp_path: Path) -> None:
    codes: list[str] = []
    with demo_stack(tmp_path, till=False) as stack:
        seeded = stack.plan.seeded
        sbx = SandboxControl(stack.url("sandbox"))
        cashier = {"Authorization": f"Bearer {seeded['terminal_key']}"}
        with httpx.Client(base_url=stack.url("server"), headers=cashier, timeout=30) as http:

            def pay(wallet: int, request_id: str) -> httpx.Response:
                order = http.post(
                    "/v1/orders",
                    json={"lines": [{"sku": "COF-LATTE", "quantity": 1}]},
                    headers={"Idempotency-Key": uuid.uuid4().hex},
                )
                assert order.status_code == 201, order.text
                code = sbx.code(wallet)
                codes.append(code)
                return http.post(
                    "/v1/payments",
                    json={"order_id": order.json()["id"], "payment_code": code},
                    headers={"Idempotency-Key": uuid.uuid4().hex, "X-Request-Id": request_id},
                )

            paid = pay(sbx.wallet("wechat"), "req-paid-1")
            assert paid.status_code == 201 and paid.headers["X-Request-Id"] == "req-paid-1", paid.text
            declined = pay(sbx.wallet("alipay", balance_fen=100), "req-declined-1")
            assert declined.json()["status"] == "failed", declined.text
            # The customer must confirm: the answer is unknown and a recovery job looks again later.
            slow_wallet = sbx.wallet("wechat", always_password=True)
            slow = pay(slow_wallet, "req-unknown-1")
            assert slow.status_code == 202, slow.text
            sbx.confirm(slow_wallet)
            deadline = time.monotonic() + 30
            while http.get(f"/v1/payments/{slow.json()['id']}").json()["status"] != "captured":
                assert time.monotonic() < deadline, "the recovery job did not capture the payment"
                time.sleep(0.3)
            junk = http.get("/healthz", headers={"X-Request-Id": "x" * 300})
            assert len(junk.headers["X-Request-Id"]) == 32  # an unusable id is replaced, never echoed
    server = _lines(stack.plan.logs / "server.log")
    by_event: dict[str, list[dict[str, Any]]] = {}
    for line in server:
        by_event.setdefault(str(line.get("event")), []).append(line)
    calls = {line["request_id"]: line for line in by_event["provider_call"]}
    assert calls["req-paid-1"]["outcome"] == "success" and calls["req-paid-1"]["provider"] == "wechat"
    assert calls["req-declined-1"]["code"] == "ACQ.BUYER_BALANCE_NOT_ENOUGH"
    assert all(isinstance(line["latency_ms"], int) for line in calls.values())
    # The request that left the answer unknown is named by the job that settled it.
    jobs = [line for line in by_event["job_run"] if line.get("request_id") == "req-unknown-1"]
    assert jobs and jobs[0]["kind"] == "resolve_payment"
    # Nothing the run used that must stay secret appears anywhere in any log.
    raw = tomllib.loads((stack.home / "sandbox" / "sandbox.toml").read_text(encoding="utf-8"))
    pem = raw["alipay"][0]["app_private_key"]
    secrets = [
        *codes,
        seeded["terminal_key"],
        seeded["merchant_key"],
        seeded["admin_key"],
        raw["wechat"][0]["api_key"],
        *[line for line in pem.splitlines() if len(line) > 40][:3],
    ]
    text = "".join(
        p.read_text(encoding="utf-8", errors="replace") for p in stack.plan.logs.glob("server*.log")
    )
    assert len(text) > 1000 and len(codes) == 3
    leaked = [s[:6] + "…" for s in secrets if s in text]
    assert leaked == []
