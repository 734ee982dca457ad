"""`tillit demo`: server, payment sandbox and one till on embedded SQLite, ready for a first sale.

Everything listens on 127.0.0.1 only. State lives under TILLIT_HOME (./var): the server database, the
sandbox's state and config (with fresh keys on first run), and the till's journal and receipts.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
import tomllib
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console

from tillit.adapters.db import migrate
from tillit.bootstrap import build
from tillit.config import Settings
from tillit.payments import accounts as provider_accounts
from tillit.sandbox.config import example_config_text
from tillit.tools import demo_seed as demo_data
from tillit.tools.demo_walk import WalkFailed, walk_delivery
from tillit.tools.mailbox import start_mailbox

# A third wallet that always asks for the password: the walk-through's "customer cancels" step.
EXTRA_WALLET = """
[[wallets]]
provider = "wechat"
name = "王五 (password)"
balance_fen = 500000
password = "123456"
always_password = true
"""


def _cmd() -> list[str]:
    exe = shutil.which("tillit")
    return [exe] if exe else [sys.executable, "-m", "tillit.cli"]


def _wait(url: str, seconds: float = 180) -> None:  # generous: a busy machine starts slowly
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} did not start; see the logs under TILLIT_HOME/logs")


@dataclass
class DemoPlan:
    """What `tillit demo` runs: each process's command, the URLs, and the seeded keys."""

    commands: dict[str, list[str]]
    urls: dict[str, str]
    seeded: dict[str, str]
    logs: Path


def prepare(
    host: str = "127.0.0.1",
    api_port: int = 8000,
    sandbox_port: int = 8700,
    till_port: int = 8600,
    sandbox_speed: float | None = None,
) -> DemoPlan:
    """Seed the database (idempotent), write the sandbox config once, connect the demo merchant to it."""
    c = build()
    home = c.settings.home
    logs = home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    sandbox_dir = home / "sandbox"
    sandbox_dir.mkdir(exist_ok=True)
    config = sandbox_dir / "sandbox.toml"
    if not config.exists():
        text = example_config_text() + EXTRA_WALLET
        if sandbox_speed is not None:
            text = text.replace("clock_speed = 1.0", f"clock_speed = {sandbox_speed}")
        config.write_text(text, encoding="utf-8")
    migrate.upgrade(c.db)
    with c.db.transaction() as conn:
        seeded = demo_data.seed(conn, c.deps)
    raw = tomllib.loads(config.read_text(encoding="utf-8"))
    sandbox_url = f"http://{host}:{sandbox_port}"
    api_url = f"http://{host}:{api_port}"
    till_url = f"http://{host}:{till_port}"
    with c.db.transaction() as conn:
        wechat, alipay = raw["wechat"][0], raw["alipay"][0]
        provider_accounts.set_account(
            conn,
            c.deps,
            seeded["merchant_id"],
            "wechat",
            {
                "appid": wechat["appid"],
                "mch_id": wechat["mch_id"],
                "api_key": wechat["api_key"],
                "base_url": sandbox_url,
                "sign_type": "HMAC-SHA256",
            },
        )
        provider_accounts.set_account(
            conn,
            c.deps,
            seeded["merchant_id"],
            "alipay",
            {
                "app_id": alipay["app_id"],
                "app_private_key_pem": alipay["app_private_key"],
                "alipay_public_key_pem": alipay["sandbox_public_key"],
                "gateway_url": sandbox_url + "/gateway.do",
                "seller_id": alipay["pid"],
                "notify_url": api_url + "/v1/providers/alipay/notify",
            },
        )
    c.db.dispose()
    commands = {
        "sandbox": [
            *_cmd(),
            "sandbox",
            "--host",
            host,
            "--port",
            str(sandbox_port),
            "--config",
            str(config),
            "--state",
            str(sandbox_dir / "state"),
        ],
        "server": [*_cmd(), "serve", "--host", host, "--port", str(api_port)],
        "till": [
            *_cmd(),
            "till",
            "--server",
            api_url,
            "--key",
            seeded["terminal_key"],
            "--port",
            str(till_port),
            "--home",
            str(home / "till"),
            "--shop",
            "Tillit Demo Café",
        ],
    }
    urls = {"sandbox": sandbox_url, "api": api_url, "till": till_url}
    return DemoPlan(commands, urls, seeded, logs)


def demo_delivery(api_url: str, merchant_key: str, terminal_key: str, sku: str = "COF-LATTE") -> str:
    """A delivery order through the public API, as a shop would make one: sold and paid in cash at the
    till, declared for delivery, handed to the carrier. Returns the customer's page URL (confirm or
    dispute there; docs/fulfilment.md)."""

    def post(path: str, body: Any, key: str) -> Any:
        headers = {"Authorization": f"Bearer {key}", "Idempotency-Key": uuid.uuid4().hex}
        r = httpx.post(api_url + path, json=body, headers=headers, timeout=30)
        r.raise_for_status()
        return r.json()

    order = post("/v1/orders", {"lines": [{"sku": sku, "quantity": 2}]}, terminal_key)
    post("/v1/payments", {"order_id": order["id"], "method": "cash"}, terminal_key)
    contact = {"contact_phone": "13800000000", "contact_name": "王女士", "language": "zh-CN"}
    body = {"kind": "delivery", "address": "上海市徐汇区漕溪北路 1 号", **contact}
    f = post(f"/v1/orders/{order['id']}/fulfilment", body, merchant_key)
    shipping = {"carrier": "顺丰速运", "tracking_number": "SF1000000001"}
    post(f"/v1/fulfilments/{f['id']}/ship", shipping, merchant_key)
    return api_url + str(f["customer_path"])


def _walk(console: Console, plan: DemoPlan, mail_dir: Path) -> None:
    """The scripted delivery order (tools/demo_walk.py): paid -> shipped -> delivered -> reminder mailed
    -> confirmed on the customer's page, the receipt mailed and printed as ESC/POS bytes."""
    console.print("\n[bold]A delivery order, from paid to confirmed by the customer's page[/bold]")
    try:
        w = walk_delivery(
            Settings.from_env(), plan.urls["api"], plan.seeded, mail_dir, plan.logs.parent / "printer"
        )
    except WalkFailed as exc:
        console.print(f"  [red]the walk stopped: {exc}[/red]")
        return
    console.print(f"  order #{w.order_number}: paid, shipped, delivered (9 days ago, on the walk's clock)")
    console.print(f"  reminder mailed       {w.mails['reminder']}")
    console.print(f"  receipt mailed        {w.mails['receipt']}")
    console.print(f"  confirmed on the page {w.customer_url}  -> status {w.status}")
    console.print(f"  e-receipt             {w.receipt_url}")
    console.print(f"  paper receipt         {w.escpos}  (ESC/POS; read it: tillit escpos-decode {w.escpos})")
    console.print(f"[bold green]walk done: order {w.order_id} {w.status}[/bold green]")


def run_demo(
    host: str = "127.0.0.1",
    api_port: int = 8000,
    sandbox_port: int = 8700,
    till_port: int = 8600,
    console: Console | None = None,
    mail_port: int = 8025,
) -> None:
    console = console or Console()
    plan = prepare(host, api_port, sandbox_port, till_port)
    seeded, logs = plan.seeded, plan.logs
    env = dict(os.environ)
    procs: list[subprocess.Popen[bytes]] = []
    # notify14: a local mailbox receives the customer messages and alerts the server sends.
    mail_dir = logs.parent / "mail"
    mailbox = start_mailbox(mail_dir, host, mail_port)
    env.update(TILLIT_SMTP_HOST=host, TILLIT_SMTP_PORT=str(mail_port), TILLIT_PUBLIC_URL=plan.urls["api"])

    def start(name: str) -> None:
        log = open(logs / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child process
        procs.append(subprocess.Popen(plan.commands[name], env=env, stdout=log, stderr=subprocess.STDOUT))

    try:
        start("sandbox")
        start("server")
        _wait(f"{plan.urls['sandbox']}/sandbox/health")
        _wait(f"{plan.urls['api']}/healthz")
        start("till")
        _wait(f"{plan.urls['till']}/healthz")
        console.print("\n[bold green]Tillit demo is running[/bold green] (Ctrl-C stops everything)\n")
        console.print(f"  Cashier page          {plan.urls['till']}/")
        console.print(f"  Sandbox customer page {plan.urls['sandbox']}/sandbox/")
        console.print(f"  API docs              {plan.urls['api']}/docs")
        # Back office (backoffice/): sign in with the merchant_key below (the admin_key opens operator pages).
        console.print(f"  Back office           {plan.urls['api']}/backoffice/ (merchant_key)")
        delivery = demo_delivery(plan.urls["api"], seeded["merchant_key"], seeded["terminal_key"])
        console.print(f"  A delivery order      {delivery}  (the customer's page: confirm or dispute)")
        _walk(console, plan, mail_dir)
        console.print(f"\n  admin_key     {seeded['admin_key']}\n  merchant_key  {seeded['merchant_key']}")
        console.print(f"  terminal_key  {seeded['terminal_key']}\n  merchant_id   {seeded['merchant_id']}")
        console.print(f"\n  logs: {logs}")
        console.print(f"  mail: {mail_dir} (smtp://{host}:{mail_port}; one .eml per message: ls, cat)\n")
        console.print("[bold green]demo ready[/bold green]\n")
        while all(p.poll() is None for p in procs):
            time.sleep(0.5)
        console.print("[red]a demo process stopped; see the logs[/red]")
    except KeyboardInterrupt:
        pass
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        mailbox.stop()
