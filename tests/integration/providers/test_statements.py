"""The sandbox's fund-flow statements (sandbox/statements.py) over real HTTP: WeChat
``/pay/downloadfundflow`` and the Alipay ``signcustomer`` download, with planted settlement faults,
read by Tillit's statement parsers and matched by the settlement check."""

from __future__ import annotations

import secrets
import uuid
from datetime import date, datetime, timedelta
from pathlib import Path

import httpx
from sqlalchemy import insert

from tests.integration.providers.conftest import APPID, MCH_ID, WECHAT_KEY, Sandbox, alipay_provider
from tests.support.world import make_tenant
from tillit.adapters.db import migrate
from tillit.adapters.db.schema import orders, payments
from tillit.adapters.providers import WeChatPayProvider
from tillit.bootstrap import build
from tillit.config import Settings
from tillit.domain.clock import ManualClock
from tillit.sandbox.signing import to_wechat_xml, wechat_sign
from tillit.settlement import service, statements

TRADE_DAY = date(2026, 11, 20)


def _fundflow(sandbox: Sandbox, day: date) -> httpx.Response:
    fields = {
        "appid": APPID,
        "mch_id": MCH_ID,
        "nonce_str": secrets.token_hex(8),
        "sign_type": "HMAC-SHA256",
        "bill_date": f"{day:%Y%m%d}",
        "account_type": "Basic",
    }
    fields["sign"] = wechat_sign(fields, WECHAT_KEY, "HMAC-SHA256")
    return sandbox.http.post(f"{sandbox.url}/pay/downloadfundflow", content=to_wechat_xml(fields).encode())


def test_sandbox_statements_carry_the_planted_faults(
    sandbox: Sandbox, wechat: WeChatPayProvider, tmp_path: Path
) -> None:
    ids = [f"TLS{i}{uuid.uuid4().hex[:8]}" for i in range(5)]  # ok, short, drop, duplicate, late
    for i, out_trade_no in enumerate(ids):
        wallet = sandbox.wallet("wechat")
        result = wechat.pay(
            out_trade_no=out_trade_no,
            auth_code=sandbox.code(wallet),
            amount=1000 * (i + 1),
            currency="CNY",
            description="商品",
        )
        assert result.provider_ref
    for out_trade_no, fault in zip(ids[1:], ("short", "drop", "duplicate", "late"), strict=True):
        r = sandbox.http.post(
            f"{sandbox.url}/sandbox/settlement/faults", json={"out_trade_no": out_trade_no, "fault": fault}
        )
        assert r.status_code == 200, r.text
    assert (
        sandbox.http.post(f"{sandbox.url}/sandbox/settlement/faults", json={"fault": "x"}).status_code == 422
    )
    assert b"BILL_CREATING" in _fundflow(sandbox, TRADE_DAY + timedelta(days=1)).content  # not before 10:00
    sandbox.advance(4 * 86_400 + 3600)  # 2026-11-24 10:00 China time: the late line's statement is ready
    day1 = statements.parse(_fundflow(sandbox, TRADE_DAY + timedelta(days=1)).content, "wechat_fundflow")
    credited = [x.out_trade_no for x in day1.lines if x.kind == "income"]
    assert credited == [ids[0], ids[1], ids[3], ids[3]]
    first = day1.lines[0]
    assert first.amount == 1000 - 4 and first.fee == 4  # 0.38 % of 10.00 yuan, half-up: 3.8 -> 4 fen
    assert day1.lines[1].amount == 2000 - 100 - 8  # short by 1 yuan
    late = statements.parse(_fundflow(sandbox, TRADE_DAY + timedelta(days=3)).content, "wechat_fundflow")
    assert [x.out_trade_no for x in late.lines] == [ids[4]]

    # Alipay: the signcustomer statement through the gateway, the file from its URL.
    with alipay_provider(sandbox.url) as alipay:
        wallet = sandbox.wallet("alipay")
        assert alipay.pay(
            out_trade_no="TLA" + ids[0][3:],
            auth_code=sandbox.code(wallet),
            amount=5000,
            currency="CNY",
            description="商品",
        ).provider_ref
        sandbox.advance(2 * 86_400)  # paid on the 24th, settled on the 25th, ready on the 26th at 10:00
        answer = alipay._call(  # the adapter fetches trade bills only; the statement call is the same API
            "alipay.data.dataservice.bill.downloadurl.query",
            {"bill_type": "signcustomer", "bill_date": "2026-11-25"},
        )
    url = answer.fields["bill_download_url"]
    zipped = sandbox.http.get(url).content
    account = statements.parse(zipped, "alipay_account")
    assert [(x.kind, x.amount) for x in account.lines] == [("income", 5000), ("fee", -19)]

    # Tillit imports the WeChat statements and finds the day duplicated, with the evidence.
    c = build(
        Settings(home=tmp_path / "home", database_url=f"sqlite:///{tmp_path / 't.sqlite'}"),
        clock=ManualClock(sandbox_now(sandbox)),
    )
    migrate.upgrade(c.db)
    tenant = make_tenant(c, "Statement shop")
    with c.db.transaction() as conn:
        order_id = uuid.uuid4().hex
        conn.execute(
            insert(orders).values(
                id=order_id,
                merchant_id=tenant.merchant_id,
                store_id=tenant.store_id,
                number=1,
                status="open",
                currency="CNY",
                subtotal=15000,
                discount_total=0,
                total=15000,
                created_at=c.deps.clock.now(),
                updated_at=c.deps.clock.now(),
            )
        )
        for i, out_trade_no in enumerate(ids):
            at = datetime(2026, 11, 20, 9, 30, tzinfo=statements.CHINA)
            conn.execute(
                insert(payments).values(
                    id=out_trade_no,
                    merchant_id=tenant.merchant_id,
                    order_id=order_id,
                    method="wechat",
                    provider="wechat",
                    amount=1000 * (i + 1),
                    currency="CNY",
                    status="captured",
                    created_at=at,
                    updated_at=at,
                )
            )
    for day in (1, 3):
        data = _fundflow(sandbox, TRADE_DAY + timedelta(days=day)).content
        service.import_statement(
            c.db,
            c.deps,
            merchant_id=tenant.merchant_id,
            data=data,
            source="wechat_fundflow",
            filename=f"d{day}.csv",
            actor="test",
        )
    [result] = service.run(c.db, c.deps, merchant_id=tenant.merchant_id, first=TRADE_DAY, last=TRADE_DAY)
    assert result["status"] == "duplicate"
    assert [e["payment_id"] for e in result["evidence"]["uncredited"]] == [ids[2]]
    assert [e["payment_id"] for e in result["evidence"]["credited_twice"]] == [ids[3]]
    c.db.dispose()


def sandbox_now(sandbox: Sandbox) -> datetime:
    return datetime.fromisoformat(sandbox.http.get(f"{sandbox.url}/sandbox/clock").json()["now"])
