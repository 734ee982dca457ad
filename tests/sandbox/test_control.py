"""Control API: wallets, codes, customer actions, ground truth, clock, faults, customer page;
bad input gets a clear 4xx JSON error and writes nothing."""

from __future__ import annotations

from typing import Any

from tests.sandbox.conftest import START, Sandbox


def _error(r: Any, status: int, code: str) -> None:
    assert r.status_code == status, r.text
    body = r.json()
    assert set(body) == {"error"} and body["error"]["code"] == code and body["error"]["message"]


def test_bad_input_is_refused_and_writes_nothing(sandbox: Sandbox) -> None:
    c = sandbox.client
    _error(c.post("/sandbox/wallets", content=b"{nope"), 400, "invalid_json")
    _error(c.post("/sandbox/wallets", json=[1]), 400, "invalid_json")
    _error(
        c.post("/sandbox/wallets", json={"provider": "visa", "name": "x", "balance_fen": 1}),
        422,
        "invalid_provider",
    )
    _error(
        c.post("/sandbox/wallets", json={"provider": "wechat", "name": "x", "balance_fen": 1.5}),
        422,
        "invalid_field",
    )
    _error(
        c.post("/sandbox/wallets", json={"provider": "wechat", "name": "x", "balance_fen": True}),
        422,
        "invalid_field",
    )
    _error(
        c.post("/sandbox/wallets", json={"provider": "wechat", "name": "x", "balance_fen": -1}),
        422,
        "invalid_amount",
    )
    _error(c.post("/sandbox/wallets", json={"provider": "wechat", "name": "x"}), 422, "missing_field")
    _error(
        c.post(
            "/sandbox/wallets", json={"provider": "wechat", "name": "x", "balance_fen": 1, "password": "12"}
        ),
        422,
        "invalid_password",
    )
    assert c.get("/sandbox/wallets").json()["wallets"] == []
    wallet = sandbox.wallet("wechat", 100, name="x")
    _error(
        c.post("/sandbox/wallets", json={"provider": "wechat", "name": "x", "balance_fen": 1}),
        409,
        "wallet_exists",
    )
    _error(c.post("/sandbox/wallets/999/codes"), 404, "wallet_not_found")
    _error(c.post("/sandbox/wallets/abc/codes"), 404, "wallet_not_found")
    _error(
        c.post(f"/sandbox/wallets/{wallet['id']}/confirm", json={"password": "123456"}),
        409,
        "no_pending_payment",
    )
    _error(c.post(f"/sandbox/wallets/{wallet['id']}/confirm", json={}), 422, "missing_field")
    _error(c.post(f"/sandbox/wallets/{wallet['id']}/cancel", json={"trade_no": "x"}), 404, "trade_not_found")
    _error(c.post("/sandbox/clock/advance", json={"seconds": -1}), 422, "invalid_seconds")
    _error(c.post("/sandbox/clock/advance", json={"seconds": "1"}), 422, "invalid_field")
    _error(c.put("/sandbox/faults", json={"endpoints": {"nope": {"hang": 1}}}), 422, "invalid_fault_profile")
    _error(c.put("/sandbox/faults", json={"endpoints": {"*": {"hang": 2}}}), 422, "invalid_fault_profile")
    _error(c.put("/sandbox/faults", json={"notify": {"loss": 0.5}, "seed": "x"}), 422, "invalid_field")
    _error(c.get("/sandbox/trades?provider=visa"), 422, "invalid_provider")
    assert c.get("/sandbox/faults").json()["profile"]["notify"]["loss"] == 0.0
    assert c.get("/sandbox/clock").json()["now"] == START.isoformat()
    assert c.get("/sandbox/wallets").json()["wallets"] == [wallet]
    assert c.get(f"/sandbox/wallets/{wallet['id']}").json()["balance_fen"] == 100


def test_ground_truth_and_clock(sandbox: Sandbox) -> None:
    wallet = sandbox.wallet("wechat", 10_000)
    code = sandbox.client.post(f"/sandbox/wallets/{wallet['id']}/codes").json()
    assert code["provider"] == "wechat" and code["expires_at"] > code["issued_at"]
    sandbox.micropay("T1", 250, code["code"])
    sandbox.wechat("/secapi/pay/refund", out_trade_no="T1", out_refund_no="R1", total_fee=250, refund_fee=50)
    truth = sandbox.ledger(wallet["id"])
    assert truth["debits"][0]["out_trade_no"] == "T1" and truth["debits"][0]["amount_fen"] == 250
    assert truth["refunds"][0]["out_refund_no"] == "R1" and truth["refunds"][0]["via"] == "refund"
    assert truth["wallet"]["balance_fen"] == 10_000 - 250 + 50
    history = sandbox.client.get(f"/sandbox/wallets/{wallet['id']}/history").json()["trades"]
    assert history[0]["status"] == "PAID" and history[0]["refunded_fen"] == 50
    advanced = sandbox.advance(90)
    assert advanced["now"] == START.replace(minute=1, second=30).isoformat()
    topped = sandbox.client.post(f"/sandbox/wallets/{wallet['id']}/topup", json={"amount_fen": 100}).json()
    assert topped["balance_fen"] == 9_900


def test_customer_page(sandbox: Sandbox) -> None:
    wallet = sandbox.wallet("wechat", 500_000, name="张三", always_password=True)
    page = sandbox.client.get("/sandbox/")
    assert page.status_code == 200 and "张三" in page.text
    r = sandbox.client.post(f"/sandbox/ui/wallets/{wallet['id']}/code", follow_redirects=False)
    assert r.status_code == 303
    shown = sandbox.client.get(r.headers["location"])
    code = r.headers["location"].split("code=")[1]
    assert "<svg" in shown.text and code in shown.text
    sandbox.micropay("T1", 1000, code)
    page = sandbox.client.get(f"/sandbox/?wallet={wallet['id']}").text
    assert "waits for your" in page and "¥10.00" in page
    r = sandbox.client.post(
        f"/sandbox/ui/wallets/{wallet['id']}/confirm", data={"password": "000000"}, follow_redirects=False
    )
    assert "wrong" in r.headers["location"]
    sandbox.client.post(f"/sandbox/ui/wallets/{wallet['id']}/confirm", data={"password": "123456"})
    assert sandbox.wechat("/pay/orderquery", out_trade_no="T1")["trade_state"] == "SUCCESS"
    assert "PAID" in sandbox.client.get(f"/sandbox/?wallet={wallet['id']}").text
