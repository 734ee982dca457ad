"""A real sandbox on a loopback port (uvicorn in a thread), its control API, and the provider-account
settings that point Tillit's production adapters at it."""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from tillit.sandbox.app import create_app
from tillit.sandbox.clock import CHINA_TZ, SandboxClock
from tillit.sandbox.config import AlipayMerchant, Behaviour, SandboxConfig, WechatMerchant, generate_rsa_pair

START = datetime(2026, 11, 20, 9, 0, 0, tzinfo=CHINA_TZ)
WECHAT_KEY = "192006250b4c09247ec02edce69f6a2d"

_APP = generate_rsa_pair(2048)
_ALIPAY = generate_rsa_pair(2048)


@dataclass(frozen=True)
class Accounts:
    """One merchant's ids at both providers; unique per test so tests can share a database."""

    mch_id: str
    appid: str
    app_id: str
    pid: str

    @classmethod
    def fresh(cls) -> Accounts:
        n = random.SystemRandom().randrange(10**9, 10**10)
        return cls(mch_id=str(n), appid=f"wx{n:016x}", app_id=f"2021{n:012d}", pid=f"2088{n:012d}")


def sandbox_config(accounts: Accounts, **behaviour: Any) -> SandboxConfig:
    return SandboxConfig(
        wechat=(WechatMerchant(accounts.appid, accounts.mch_id, WECHAT_KEY, 3800),),
        alipay=(
            AlipayMerchant(
                app_id=accounts.app_id,
                pid=accounts.pid,
                app_public_key=_APP.public_pem,
                sandbox_private_key=_ALIPAY.private_pem,
                sandbox_public_key=_ALIPAY.public_pem,
                fee_rate_ppm=3800,
                stores={"S001": "一号店"},
            ),
        ),
        behaviour=Behaviour(**behaviour),
    )


def provider_accounts(
    accounts: Accounts, url: str, notify_url: str | None = None, timeout_s: float = 3.0
) -> dict[str, dict[str, Any]]:
    """Tillit provider-account settings for the sandbox at ``url``."""
    return {
        "wechat": {
            "appid": accounts.appid,
            "mch_id": accounts.mch_id,
            "api_key": WECHAT_KEY,
            "base_url": url,
            "sign_type": "HMAC-SHA256",
            "timeout_s": timeout_s,
        },
        "alipay": {
            "app_id": accounts.app_id,
            "app_private_key_pem": _APP.private_pem,
            "alipay_public_key_pem": _ALIPAY.public_pem,
            "gateway_url": url + "/gateway.do",
            "seller_id": accounts.pid,
            "timeout_s": timeout_s,
            **({"notify_url": notify_url} if notify_url else {}),
        },
    }


class SandboxControl:
    """The sandbox's control API: wallets, codes, customer actions, faults, clock, ground truth."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = httpx.Client(base_url=url, timeout=10)
        self._names = 0

    def wallet(self, provider: str, balance_fen: int = 100_000, **kw: Any) -> int:
        self._names += 1
        r = self.http.post(
            "/sandbox/wallets",
            json={
                "provider": provider,
                "name": f"{provider}-{self._names}",
                "balance_fen": balance_fen,
                **kw,
            },
        )
        assert r.status_code == 201, r.text
        return int(r.json()["id"])

    def code(self, wallet_id: int) -> str:
        r = self.http.post(f"/sandbox/wallets/{wallet_id}/codes")
        assert r.status_code == 201, r.text
        return str(r.json()["code"])

    def confirm(self, wallet_id: int, password: str = "123456") -> dict[str, Any]:
        r = self.http.post(f"/sandbox/wallets/{wallet_id}/confirm", json={"password": password})
        assert r.status_code == 200, r.text
        return dict(r.json())

    def cancel(self, wallet_id: int) -> dict[str, Any]:
        r = self.http.post(f"/sandbox/wallets/{wallet_id}/cancel")
        assert r.status_code == 200, r.text
        return dict(r.json())

    def advance(self, seconds: float) -> None:
        r = self.http.post("/sandbox/clock/advance", json={"seconds": seconds})
        assert r.status_code == 200, r.text

    def faults(self, endpoints: dict[str, dict[str, float]] | None = None, **profile: Any) -> None:
        r = self.http.put("/sandbox/faults", json={"endpoints": endpoints or {}, **profile})
        assert r.status_code == 200, r.text

    def ledger(self, wallet_id: int) -> dict[str, Any]:
        r = self.http.get(f"/sandbox/wallets/{wallet_id}/ledger")
        assert r.status_code == 200, r.text
        return dict(r.json())

    def net_debited(self, wallet_id: int) -> int:
        book = self.ledger(wallet_id)
        return int(book["total_debited_fen"]) - int(book["total_refunded_fen"])


def free_socket() -> socket.socket:
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY only on such sockets (else ~40 ms delayed ACKs).
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    return sock


@contextmanager
def running_sandbox(
    state_dir: Path, accounts: Accounts, *, clock: SandboxClock | None = None, seed: int = 7, **behaviour: Any
) -> Iterator[SandboxControl]:
    app = create_app(
        sandbox_config(accounts, **behaviour),
        state_dir,
        clock=clock or SandboxClock(start=START, speed=0),
        seed=seed,
    )
    sock = free_socket()
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        assert time.monotonic() < deadline, "sandbox did not start"
        time.sleep(0.005)
    control = SandboxControl(f"http://127.0.0.1:{port}")
    try:
        yield control
    finally:
        control.http.close()
        server.should_exit = True
        thread.join(10)
