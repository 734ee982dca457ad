"""`tillit providers connect-sandbox`: merchants' WeChat Pay and Alipay accounts."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Annotated

import typer

from tillit.bootstrap import build
from tillit.cli.output import console, exit_on_refusal
from tillit.payments import accounts as provider_accounts

app = typer.Typer(help="Merchants' WeChat Pay and Alipay accounts.", no_args_is_help=True)


@app.command("connect-sandbox")
def providers_connect_sandbox(
    merchant_id: Annotated[str, typer.Option(help="The merchant whose accounts point at the sandbox")],
    config: Annotated[str, typer.Option(help="The sandbox's TOML config")] = "sandbox.toml",
    sandbox_url: Annotated[str, typer.Option(help="Where the sandbox listens")] = "http://127.0.0.1:8700",
    notify_base: Annotated[str, typer.Option(help="This server's base URL, for Alipay notifications")] = (
        "http://127.0.0.1:8000"
    ),
) -> None:
    """Point a merchant's WeChat and Alipay accounts at a `tillit sandbox` (first account of each)."""
    raw = tomllib.loads(Path(config).read_text(encoding="utf-8"))
    wechat, alipay = raw["wechat"][0], raw["alipay"][0]
    settings = {
        "wechat": {
            "appid": wechat["appid"],
            "mch_id": wechat["mch_id"],
            "api_key": wechat["api_key"],
            "base_url": sandbox_url,
            "sign_type": "HMAC-SHA256",
        },
        "alipay": {
            "app_id": alipay["app_id"],
            "app_private_key_pem": alipay["app_private_key"],
            "alipay_public_key_pem": alipay["sandbox_public_key"],
            "gateway_url": sandbox_url + "/gateway.do",
            "seller_id": alipay["pid"],
            "notify_url": notify_base.rstrip("/") + "/v1/providers/alipay/notify",
        },
    }
    c = build()
    with exit_on_refusal(), c.db.transaction() as conn:
        for provider, values in settings.items():
            provider_accounts.set_account(conn, c.deps, merchant_id, provider, values)
    console.print(
        f"merchant {merchant_id}: wechat mch_id {wechat['mch_id']} and alipay app_id {alipay['app_id']} "
        f"now use the sandbox at {sandbox_url}"
    )
