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
from pathlib import Path

import httpx
from rich.console import Console

from tillit.adapters.db import migrate
from tillit.bootstrap import build
from tillit.sandbox.config import example_config_text
from tillit.services import demo as demo_data
from tillit.services import provider_accounts

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


def _wait(url: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise SystemExit(f"{url} did not start; see the logs under TILLIT_HOME/logs")


def run_demo(
    host: str = "127.0.0.1",
    api_port: int = 8000,
    sandbox_port: int = 8700,
    till_port: int = 8600,
    console: Console | None = None,
) -> None:
    console = console or Console()
    c = build()
    home = c.settings.home
    logs = home / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    sandbox_dir = home / "sandbox"
    sandbox_dir.mkdir(exist_ok=True)
    config = sandbox_dir / "sandbox.toml"
    if not config.exists():
        config.write_text(example_config_text() + EXTRA_WALLET, encoding="utf-8")
    migrate.upgrade(c.db)
    with c.db.transaction() as conn:
        seeded = demo_data.seed(conn, c.deps)
    import tomllib

    raw = tomllib.loads(config.read_text(encoding="utf-8"))
    sandbox_url = f"http://{host}:{sandbox_port}"
    api_url = f"http://{host}:{api_port}"
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
    env = dict(os.environ)
    procs: list[subprocess.Popen[bytes]] = []

    def start(name: str, args: list[str], cwd: Path | None = None) -> None:
        log = open(logs / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child process
        procs.append(subprocess.Popen(args, env=env, cwd=cwd, stdout=log, stderr=subprocess.STDOUT))

    try:
        start(
            "sandbox",
            [
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
        )
        start("server", [*_cmd(), "serve", "--host", host, "--port", str(api_port)])
        _wait(f"{sandbox_url}/sandbox/health")
        _wait(f"{api_url}/healthz")
        start(
            "till",
            [
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
        )
        _wait(f"http://{host}:{till_port}/healthz")
        console.print("\n[bold green]Tillit demo is running[/bold green] (Ctrl-C stops everything)\n")
        console.print(f"  Cashier page          http://{host}:{till_port}/")
        console.print(f"  Sandbox customer page {sandbox_url}/sandbox/")
        console.print(f"  API docs              {api_url}/docs")
        console.print(f"\n  admin_key     {seeded['admin_key']}\n  merchant_key  {seeded['merchant_key']}")
        console.print(f"  terminal_key  {seeded['terminal_key']}\n  merchant_id   {seeded['merchant_id']}")
        console.print(f"\n  logs: {logs}\n")
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
