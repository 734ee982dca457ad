"""Fault injection: reproducible per seed, and each fault does what it promises."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from tests.sandbox.conftest import KEYS, WECHAT_KEY, Sandbox
from tests.sandbox.test_alipay import Receiver, _member, _pay
from tillit.sandbox.signing import parse_wechat_xml, rsa2_verify, wechat_sign

PROFILE = {
    "endpoints": {"*": {"latency": 0.3, "system_error": 0.2, "answer_lost": 0.2, "bad_signature": 0.2}}
}


def _scenario(sb: Sandbox) -> list[Any]:
    """A fixed request sequence; returns what the client saw."""
    assert sb.client.put("/sandbox/faults", json={**PROFILE, "seed": 99}).status_code == 200
    wallet = sb.wallet("wechat", 1_000_000, name="w")
    seen: list[Any] = []
    for n in range(25):
        r = sb.client.post("/pay/orderquery", content=_signed_query(f"T{n}"))
        seen.append((r.status_code, parse_wechat_xml(r.content).get("err_code") if r.content else None))
    seen.append(sb.client.get("/sandbox/faults/log").json()["log"])
    seen.append(sb.ledger(wallet["id"])["total_debited_fen"])
    return seen


def _signed_query(out_trade_no: str) -> bytes:
    from tests.sandbox.conftest import APPID, MCH_ID
    from tillit.sandbox.signing import to_wechat_xml

    fields = {"appid": APPID, "mch_id": MCH_ID, "nonce_str": "n", "out_trade_no": out_trade_no}
    fields["sign"] = wechat_sign(fields, WECHAT_KEY)
    return to_wechat_xml(fields).encode()


def test_same_seed_same_fault_sequence(make_sandbox: Callable[..., Sandbox], tmp_path: Any) -> None:
    first = _scenario(make_sandbox(state=tmp_path / "a", seed=1))
    second = _scenario(make_sandbox(state=tmp_path / "b", seed=2))  # PUT seed=99 overrides both
    assert first == second
    log = first[-2]
    assert {f for entry in log for f in entry["faults"]} >= {"latency", "system_error", "answer_lost"}
    third = make_sandbox(state=tmp_path / "c", seed=5)
    third.client.put("/sandbox/faults", json={**PROFILE, "seed": 100})
    third.wallet("wechat", 1, name="w")
    for n in range(25):
        third.client.post("/pay/orderquery", content=_signed_query(f"T{n}"))
    assert third.client.get("/sandbox/faults/log").json()["log"] != log


def test_answer_lost_moves_money_system_error_does_not(sandbox: Sandbox) -> None:
    wallet = sandbox.wallet("wechat", 10_000)
    sandbox.client.put("/sandbox/faults", json={"endpoints": {"wechat.micropay": {"answer_lost": 1}}})
    code = sandbox.code(wallet["id"])
    fields = {
        "out_trade_no": "T1",
        "total_fee": "100",
        "auth_code": code,
        "body": "x",
        "spbill_create_ip": "1",
    }
    from tests.sandbox.conftest import APPID, MCH_ID
    from tillit.sandbox.signing import to_wechat_xml

    data = {"appid": APPID, "mch_id": MCH_ID, "nonce_str": "n", **fields}
    data["sign"] = wechat_sign(data, WECHAT_KEY)
    r = sandbox.client.post("/pay/micropay", content=to_wechat_xml(data).encode())
    assert r.status_code == 502 and r.content == b""
    assert sandbox.ledger(wallet["id"])["total_debited_fen"] == 100  # committed before the answer was lost
    assert sandbox.wechat("/pay/orderquery", out_trade_no="T1")["trade_state"] == "SUCCESS"

    sandbox.client.put("/sandbox/faults", json={"endpoints": {"wechat.micropay": {"system_error": 1}}})
    answer = sandbox.micropay("T2", 100, sandbox.code(wallet["id"]))
    assert answer["err_code"] == "SYSTEMERROR" and answer["sign"] == wechat_sign(answer, WECHAT_KEY)
    assert sandbox.wechat("/pay/orderquery", out_trade_no="T2")["err_code"] == "ORDERNOTEXIST"
    sandbox.client.put("/sandbox/faults", json={"endpoints": {"wechat.reverse": {"system_error": 1}}})
    assert sandbox.wechat("/secapi/pay/reverse", out_trade_no="T1")["recall"] == "Y"
    assert sandbox.ledger(wallet["id"])["total_debited_fen"] == 100


def test_bad_signature_faults_on_both_providers(sandbox: Sandbox) -> None:
    sandbox.client.put("/sandbox/faults", json={"endpoints": {"*": {"bad_signature": 1}}})
    answer = sandbox.wechat("/pay/orderquery", out_trade_no="T1")
    assert answer["err_code"] == "ORDERNOTEXIST" and answer["sign"] != wechat_sign(answer, WECHAT_KEY)
    r = sandbox.alipay_raw("alipay.trade.query", {"out_trade_no": "A1"})
    assert not rsa2_verify(
        _member(r.text, "alipay_trade_query_response"), r.json()["sign"], KEYS.sandbox_public
    )
    sandbox.client.put("/sandbox/faults", json={"endpoints": {"alipay.trade.query": {"system_error": 1}}})
    assert sandbox.alipay("alipay.trade.query", {"out_trade_no": "A1"})["code"] == "20000"


def test_latency_and_hang_sleep_real_time(make_sandbox: Callable[..., Sandbox]) -> None:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    sandbox = make_sandbox(sleep=sleep)
    sandbox.client.put(
        "/sandbox/faults",
        json={
            "endpoints": {"wechat.orderquery": {"latency": 1, "hang": 1}},
            "latency_ms": 250,
            "hang_seconds": 12,
        },
    )
    sandbox.wechat("/pay/orderquery", out_trade_no="T1")
    assert slept == [0.25, 12.0]


def test_notification_duplicate_loss_and_delay(make_sandbox: Callable[..., Sandbox]) -> None:
    receiver = Receiver()
    sandbox = make_sandbox(notify_transport=httpx.MockTransport(receiver.handler))
    wallet = sandbox.wallet("alipay", 500_000, always_password=True)

    def paid_trade(out_trade_no: str) -> None:
        _pay(sandbox, out_trade_no, "1.00", sandbox.code(wallet["id"]), notify_url="http://m/n")
        sandbox.client.post(f"/sandbox/wallets/{wallet['id']}/confirm", json={"password": "123456"})

    sandbox.client.put("/sandbox/faults", json={"notify": {"duplicate": 1}})
    paid_trade("A1")
    sandbox.advance(0)
    assert [p["out_trade_no"] for p in receiver.posts] == ["A1", "A1"]

    sandbox.client.put("/sandbox/faults", json={"notify": {"loss": 1}})
    paid_trade("A2")
    sandbox.advance(0)
    assert len(receiver.posts) == 2  # lost
    sandbox.client.put("/sandbox/faults", json={"notify": {"delay": 1}, "delay_seconds": 100})
    sandbox.advance(240)  # the retry is due but delayed
    assert len(receiver.posts) == 2
    sandbox.client.put("/sandbox/faults", json={})
    sandbox.advance(100)
    assert [p["out_trade_no"] for p in receiver.posts][-1] == "A2"


def test_late_bill_fault(sandbox: Sandbox) -> None:
    wallet = sandbox.wallet("alipay", 10_000)
    _pay(sandbox, "A1", "1.00", sandbox.code(wallet["id"]))
    sandbox.advance(2 * 86400)
    sandbox.client.put("/sandbox/faults", json={"late_bill": 1})
    biz = {"bill_type": "trade", "bill_date": "2026-11-20"}
    assert (
        sandbox.alipay("alipay.data.dataservice.bill.downloadurl.query", biz)["sub_code"]
        == "isp.bill_not_exist"
    )
    sandbox.client.put("/sandbox/faults", json={})
    assert sandbox.alipay("alipay.data.dataservice.bill.downloadurl.query", biz)["code"] == "10000"


def test_stats_count_every_decision_beyond_the_log(
    make_sandbox: Callable[..., Sandbox], tmp_path: Any
) -> None:
    """``/sandbox/faults/stats`` counts every decision, fired or not, which a long chaos run needs: the
    log keeps only the last 10,000 that fired. Latency alone does not make a call faulted."""
    sb = make_sandbox(state=tmp_path / "s", seed=1)
    profile = {"endpoints": {"wechat.orderquery": {"system_error": 0.5, "latency": 0.5}}, "latency_ms": 0}
    assert sb.client.put("/sandbox/faults", json={**profile, "seed": 7}).status_code == 200
    sb.wallet("wechat", 1, name="w")
    for n in range(40):
        sb.client.post("/pay/orderquery", content=_signed_query(f"S{n}"))
    stats = sb.client.get("/sandbox/faults/stats").json()
    log = sb.client.get("/sandbox/faults/log").json()["log"]
    assert stats["decisions"]["endpoint:wechat.orderquery"] == 40
    errors = sum("system_error" in e["faults"] for e in log)
    slow = sum("latency" in e["faults"] for e in log)
    assert stats["faulted"]["endpoint:wechat.orderquery"] == errors
    assert stats["fired"] == {"wechat.orderquery:system_error": errors, "wechat.orderquery:latency": slow}
    assert 0 < errors < 40 and slow > 0
    # A new seed restarts the counters with the sequence.
    sb.client.put("/sandbox/faults", json={**profile, "seed": 8})
    assert sb.client.get("/sandbox/faults/stats").json()["decisions"] == {}
