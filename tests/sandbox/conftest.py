"""Shared fixtures: a sandbox app on a manual clock, signed WeChat/Alipay request helpers, and a
real uvicorn server for wire tests with third-party client libraries."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from tillit.sandbox.app import create_app
from tillit.sandbox.clock import CHINA_TZ, SandboxClock
from tillit.sandbox.config import (
    AlipayMerchant,
    Behaviour,
    SandboxConfig,
    WechatMerchant,
    generate_rsa_pair,
)
from tillit.sandbox.signing import (
    alipay_string_to_sign,
    parse_wechat_xml,
    rsa2_sign,
    to_wechat_xml,
    wechat_sign,
)

START = datetime(2026, 11, 20, 9, 0, 0, tzinfo=CHINA_TZ)
WECHAT_KEY = "192006250b4c09247ec02edce69f6a2d"
APPID = "wx2421b1c4370ec43b"
MCH_ID = "10000100"
ALIPAY_APP_ID = "2021000000000001"
ALIPAY_PID = "2088102177846880"

_APP_KEYS = generate_rsa_pair(2048)
_SANDBOX_KEYS = generate_rsa_pair(2048)


@dataclass(frozen=True)
class Keys:
    """Keys a client needs: its own private key and the sandbox ("Alipay") public key."""

    app_private: str
    app_public: str
    sandbox_public: str


KEYS = Keys(_APP_KEYS.private_pem, _APP_KEYS.public_pem, _SANDBOX_KEYS.public_pem)


def make_config(**behaviour: Any) -> SandboxConfig:
    """A config with one merchant per provider and no seeded wallets."""
    return SandboxConfig(
        wechat=(WechatMerchant(APPID, MCH_ID, WECHAT_KEY, 3800),),
        alipay=(
            AlipayMerchant(
                app_id=ALIPAY_APP_ID,
                pid=ALIPAY_PID,
                app_public_key=_APP_KEYS.public_pem,
                sandbox_private_key=_SANDBOX_KEYS.private_pem,
                sandbox_public_key=_SANDBOX_KEYS.public_pem,
                fee_rate_ppm=3800,
                stores={"S001": "一号店"},
            ),
        ),
        behaviour=Behaviour(**{"wechat_refund_min_interval_seconds": 0, **behaviour}),
    )


async def _no_sleep(seconds: float) -> None:
    return None


class Sandbox:
    """A sandbox app plus helpers speaking both protocols and the control API."""

    def __init__(self, app: FastAPI, client: TestClient, clock: SandboxClock, state_dir: Path):
        self.app = app
        self.client = client
        self.clock = clock
        self.state_dir = state_dir

    # -- control API
    def wallet(
        self, provider: str, balance_fen: int = 100_000, name: str | None = None, **kw: Any
    ) -> dict[str, Any]:
        name = name or f"{provider}-{len(self.client.get('/sandbox/wallets').json()['wallets'])}"
        r = self.client.post(
            "/sandbox/wallets", json={"provider": provider, "name": name, "balance_fen": balance_fen, **kw}
        )
        assert r.status_code == 201, r.text
        return dict(r.json())

    def code(self, wallet_id: int) -> str:
        r = self.client.post(f"/sandbox/wallets/{wallet_id}/codes")
        assert r.status_code == 201, r.text
        return str(r.json()["code"])

    def ledger(self, wallet_id: int) -> dict[str, Any]:
        return dict(self.client.get(f"/sandbox/wallets/{wallet_id}/ledger").json())

    def advance(self, seconds: float) -> dict[str, Any]:
        r = self.client.post("/sandbox/clock/advance", json={"seconds": seconds})
        assert r.status_code == 200, r.text
        return dict(r.json())

    # -- WeChat
    def wechat(
        self, path: str, sign_type: str = "MD5", key: str = WECHAT_KEY, **fields: Any
    ) -> dict[str, str]:
        data = {
            "appid": APPID,
            "mch_id": MCH_ID,
            "nonce_str": "n0nce",
            **{k: str(v) for k, v in fields.items()},
        }
        if sign_type != "MD5":
            data["sign_type"] = sign_type
        data["sign"] = wechat_sign(data, key, sign_type)
        r = self.client.post(path, content=to_wechat_xml(data).encode())
        assert r.status_code == 200, r.text
        return parse_wechat_xml(r.content)

    def micropay(self, out_trade_no: str, total_fee: int, auth_code: str, **extra: Any) -> dict[str, str]:
        return self.wechat(
            "/pay/micropay",
            out_trade_no=out_trade_no,
            total_fee=total_fee,
            auth_code=auth_code,
            body=extra.pop("body", "商品"),
            spbill_create_ip="127.0.0.1",
            **extra,
        )

    # -- Alipay
    def alipay_params(self, method: str, biz: dict[str, Any], **common: str) -> dict[str, str]:
        params = {
            "app_id": ALIPAY_APP_ID,
            "method": method,
            "charset": "utf-8",
            "sign_type": "RSA2",
            "timestamp": "2026-11-20 09:00:00",
            "version": "1.0",
            "biz_content": json.dumps(biz, ensure_ascii=False, separators=(",", ":")),
            **common,
        }
        params["sign"] = rsa2_sign(alipay_string_to_sign(params), KEYS.app_private)
        return params

    def alipay_raw(self, method: str, biz: dict[str, Any], **common: str) -> httpx.Response:
        response: httpx.Response = self.client.post(
            "/gateway.do",
            content=urlencode(self.alipay_params(method, biz, **common)),
            headers={"content-type": "application/x-www-form-urlencoded;charset=utf-8"},
        )
        return response

    def alipay(self, method: str, biz: dict[str, Any], **common: str) -> dict[str, Any]:
        r = self.alipay_raw(method, biz, **common)
        assert r.status_code == 200, r.text
        body = r.json()
        return dict(body[method.replace(".", "_") + "_response"])


def build(
    tmp_path: Path, seed: int = 7, clock: SandboxClock | None = None, **kw: Any
) -> tuple[FastAPI, SandboxClock]:
    clock = clock or SandboxClock(start=START, speed=0)
    behaviour = kw.pop("behaviour", {})
    kw.setdefault("sleep", _no_sleep)
    app = create_app(make_config(**behaviour), tmp_path / "state", clock=clock, seed=seed, **kw)
    return app, clock


@pytest.fixture
def make_sandbox(tmp_path: Path) -> Iterator[Callable[..., Sandbox]]:
    """Factory for sandboxes (each test gets its own state dir); clients are closed afterwards."""
    clients: list[TestClient] = []

    def factory(state: Path | None = None, **kw: Any) -> Sandbox:
        app, clock = build(state or tmp_path, **kw)
        client = TestClient(app)
        client.__enter__()
        clients.append(client)
        return Sandbox(app, client, clock, (state or tmp_path) / "state")

    yield factory
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def sandbox(make_sandbox: Callable[..., Sandbox]) -> Sandbox:
    """A fresh sandbox on a manual clock at 2026-11-20 09:00 China time."""
    return make_sandbox()


@dataclass
class LiveServer:
    """A real uvicorn server on 127.0.0.1 serving a sandbox app."""

    url: str
    sandbox: Sandbox


@pytest.fixture
def live(tmp_path: Path) -> Iterator[LiveServer]:
    """Serve a sandbox over real HTTP for third-party client libraries."""
    app, clock = build(tmp_path)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "server did not start"
        time.sleep(0.01)
    url = f"http://127.0.0.1:{port}"
    client = TestClient(app, base_url=url)
    try:
        yield LiveServer(url, Sandbox(app, client, clock, tmp_path / "state"))
    finally:
        server.should_exit = True
        thread.join(5)
