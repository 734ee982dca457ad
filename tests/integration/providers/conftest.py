"""A real sandbox on a loopback port (uvicorn in a thread) and providers pointed at it.

Each test gets a fresh sandbox (own state directory, manual clock at 2026-11-20 09:00 China time,
fault profile empty). Provider time only moves through ``advance``; the only real waiting is the
``hang`` fault, which exists to trip the client's read timeout.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
import uvicorn

from tests.support.sandbox import SandboxControl
from tillit.adapters.providers import AlipayAccount, AlipayProvider, WeChatAccount, WeChatPayProvider
from tillit.sandbox.app import create_app
from tillit.sandbox.clock import CHINA_TZ, SandboxClock
from tillit.sandbox.config import AlipayMerchant, Behaviour, SandboxConfig, WechatMerchant, generate_rsa_pair

START = datetime(2026, 11, 20, 9, 0, 0, tzinfo=CHINA_TZ)
APPID = "wx2421b1c4370ec43b"
MCH_ID = "10000100"
WECHAT_KEY = "192006250b4c09247ec02edce69f6a2d"
ALIPAY_APP_ID = "2021000000000001"
ALIPAY_PID = "2088102177846880"
NOTIFY_URL = "http://merchant.test/alipay/notify"
TIMEOUT_S = 3.0  # read timeout for ordinary calls (the sandbox answers in milliseconds)

_APP_KEYS = generate_rsa_pair(2048)  # the merchant app's pair (we sign with the private key)
_SANDBOX_KEYS = generate_rsa_pair(2048)  # "Alipay's" pair (we verify with the public key)


@dataclass(frozen=True)
class Keys:
    app_private: str
    app_public: str
    alipay_private: str
    alipay_public: str


KEYS = Keys(_APP_KEYS.private_pem, _APP_KEYS.public_pem, _SANDBOX_KEYS.private_pem, _SANDBOX_KEYS.public_pem)


def sandbox_config(**behaviour: Any) -> SandboxConfig:
    return SandboxConfig(
        wechat=(WechatMerchant(APPID, MCH_ID, WECHAT_KEY, 3800),),
        alipay=(
            AlipayMerchant(
                app_id=ALIPAY_APP_ID,
                pid=ALIPAY_PID,
                app_public_key=KEYS.app_public,
                sandbox_private_key=KEYS.alipay_private,
                sandbox_public_key=KEYS.alipay_public,
                fee_rate_ppm=3800,
                stores={"S001": "一号店"},
            ),
        ),
        behaviour=Behaviour(**behaviour),
    )


@dataclass
class Receiver:
    """The merchant's notify_url: records every form the sandbox posts and answers ``success``."""

    posts: list[dict[str, str]] = field(default_factory=list)

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.posts.append(dict(parse_qsl(request.content.decode("utf-8"), keep_blank_values=True)))
        return httpx.Response(200, text="success")


class Sandbox(SandboxControl):
    """The control API of a running sandbox, plus the notify_url receiver these tests read."""

    def __init__(self, url: str, receiver: Receiver) -> None:
        super().__init__(url)
        self.receiver = receiver

    def debited(self, wallet_id: int) -> int:
        return int(self.ledger(wallet_id)["total_debited_fen"])

    def refunded(self, wallet_id: int) -> int:
        return int(self.ledger(wallet_id)["total_refunded_fen"])


@pytest.fixture(scope="session")
def _stopping() -> Iterator[list[threading.Thread]]:
    """Server threads told to stop: they wind down in the background while later tests run
    (uvicorn's shutdown takes ~0.2 s), and are all joined at the end of the session."""
    threads: list[threading.Thread] = []
    yield threads
    for thread in threads:
        thread.join(10)


@pytest.fixture
def make_sandbox(tmp_path: Path, _stopping: list[threading.Thread]) -> Iterator[Callable[..., Sandbox]]:
    """Start sandboxes on real loopback ports; all are stopped after the test."""
    running: list[tuple[uvicorn.Server, threading.Thread, Sandbox]] = []

    def start(**behaviour: Any) -> Sandbox:
        receiver = Receiver()
        app = create_app(
            sandbox_config(**behaviour),
            tmp_path / f"state{len(running)}",
            clock=SandboxClock(start=START, speed=0),
            seed=7,
            notify_transport=httpx.MockTransport(receiver.handler),
        )
        # IPPROTO_TCP explicitly: asyncio only sets TCP_NODELAY on sockets that say so, and without
        # it every keep-alive answer waits ~40 ms for a delayed ACK.
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        config = uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=3)
        server = uvicorn.Server(config)
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline, "sandbox did not start"
            time.sleep(0.005)
        sandbox = Sandbox(f"http://127.0.0.1:{port}", receiver)
        running.append((server, thread, sandbox))
        return sandbox

    yield start
    for server, thread, sandbox in running:
        sandbox.http.close()
        server.should_exit = True
        _stopping.append(thread)


@pytest.fixture
def sandbox(make_sandbox: Callable[..., Sandbox]) -> Sandbox:
    return make_sandbox()


def wechat_provider(url: str, *, sign_type: str = "HMAC-SHA256", **kw: Any) -> WeChatPayProvider:
    """How Tillit points its production WeChat adapter at a sandbox."""
    kw.setdefault("timeout_s", TIMEOUT_S)
    kw.setdefault("connect_timeout_s", 1.0)
    kw.setdefault("api_key", WECHAT_KEY)
    account = WeChatAccount(appid=APPID, mch_id=MCH_ID, base_url=url, sign_type=sign_type, **kw)
    return WeChatPayProvider(account)


def alipay_provider(url: str, **kw: Any) -> AlipayProvider:
    """How Tillit points its production Alipay adapter at a sandbox."""
    kw.setdefault("timeout_s", TIMEOUT_S)
    kw.setdefault("connect_timeout_s", 1.0)
    kw.setdefault("app_private_key_pem", KEYS.app_private)
    kw.setdefault("alipay_public_key_pem", KEYS.alipay_public)
    kw.setdefault("seller_id", ALIPAY_PID)
    kw.setdefault("notify_url", NOTIFY_URL)
    account = AlipayAccount(app_id=ALIPAY_APP_ID, gateway_url=url + "/gateway.do", **kw)
    return AlipayProvider(account)


@pytest.fixture
def wechat(sandbox: Sandbox) -> Iterator[WeChatPayProvider]:
    with wechat_provider(sandbox.url) as provider:
        yield provider


@pytest.fixture
def alipay(sandbox: Sandbox) -> Iterator[AlipayProvider]:
    with alipay_provider(sandbox.url) as provider:
        yield provider
