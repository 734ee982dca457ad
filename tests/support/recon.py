"""A planted-discrepancy corpus for reconciliation tests: provider trades rendered as real bills by the
sandbox's own bill writers (WeChat CSV, Alipay ZIP), and the local payments/refunds that disagree
with them in exactly the planted ways."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from tillit.sandbox import bills as sandbox_bills
from tillit.sandbox.clock import CHINA_TZ
from tillit.sandbox.config import AlipayMerchant, WechatMerchant
from tillit.sandbox.engine import Refund, Trade

DAY = date(2026, 11, 20)
RATE_PPM = 3800
FEE_PLANT_AMOUNT = 7777  # the one trade whose fee is charged at another rate
WECHAT = WechatMerchant("wx2421b1c4370ec43b", "10000100", "k" * 32, RATE_PPM)
ALIPAY = AlipayMerchant("2021000000000001", "2088102177846880", "", "", "", RATE_PPM, {"S001": "一号店"})


def china(day: date, hh: int, mm: int, ss: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hh, mm, ss, tzinfo=CHINA_TZ)


def uid() -> str:
    return uuid.uuid4().hex


@dataclass
class LocalPayment:
    id: str
    amount: int
    status: str
    created: datetime
    provider_ref: str | None


@dataclass
class LocalRefund:
    id: str
    payment_id: str
    amount: int
    status: str
    created: datetime
    provider_ref: str | None = None


def fresh_accounts() -> tuple[WechatMerchant, AlipayMerchant]:
    """Unique provider accounts, so tests that share a database never claim the same mch_id/app_id."""
    n = uuid.uuid4().int % 10**10
    return (
        WechatMerchant(f"wx{n:016x}", str(n), "k" * 32, RATE_PPM),
        AlipayMerchant(f"2021{n:012d}", f"2088{n:012d}", "", "", "", RATE_PPM, {"S001": "一号店"}),
    )


@dataclass
class Corpus:
    provider: str
    wechat: WechatMerchant = WECHAT
    alipay: AlipayMerchant = ALIPAY
    day: date = DAY
    #: the WeChat bill_type rendered (ALL, SUCCESS or REFUND); Alipay has one trade bill
    bill_type: str = "ALL"
    trades: list[Trade] = field(default_factory=list)
    refunds: list[tuple[Trade, Refund]] = field(default_factory=list)
    duplicated: list[Trade] = field(default_factory=list)
    local_payments: list[LocalPayment] = field(default_factory=list)
    local_refunds: list[LocalRefund] = field(default_factory=list)
    #: (class, reason, out_trade_no or out_refund_no) for every planted discrepancy
    planted: set[tuple[str, str, str]] = field(default_factory=set)

    def bill_bytes(self) -> bytes:
        with _fee_plant():
            if self.provider == "wechat":
                text = sandbox_bills.wechat_bill(
                    self.wechat, self.bill_type, self.trades + self.duplicated, self.refunds, lambda t: None
                )
                assert text is not None
                return text.encode("utf-8")
            start = china(self.day, 0, 0)
            bill = sandbox_bills.alipay_bill(
                self.alipay,
                self.day,
                start,
                start + timedelta(days=1),
                china(self.day + timedelta(days=1), 10, 0),
                self.trades + self.duplicated,
                self.refunds,
                lambda t: None,
            )
            return bill.zip_bytes


@contextlib.contextmanager
def _fee_plant() -> Iterator[None]:
    """The trade of FEE_PLANT_AMOUNT is charged at 0.60% instead of the contracted 0.38%."""
    e5, fen = sandbox_bills.fee_e5, sandbox_bills.fee_fen

    def wrong_e5(amount: int, rate: int) -> int:
        return e5(amount, 6000 if amount == FEE_PLANT_AMOUNT else rate)

    def wrong_fen(amount: int, rate: int) -> int:
        return fen(amount, 6000 if amount == FEE_PLANT_AMOUNT else rate)

    sandbox_bills.fee_e5, sandbox_bills.fee_fen = wrong_e5, wrong_fen  # type: ignore[assignment]
    try:
        yield
    finally:
        sandbox_bills.fee_e5, sandbox_bills.fee_fen = e5, fen  # type: ignore[assignment]


def _trade(provider: str, n: int, amount: int, paid: datetime, out_trade_no: str | None = None) -> Trade:
    return Trade(
        id=n,
        provider=provider,
        merchant="",
        out_trade_no=out_trade_no or uid(),
        trade_no=(
            f"42000{n:011d}{uuid.uuid4().int % 10**12:012d}"
            if provider == "wechat"
            else f"2026112022{n:06d}{uuid.uuid4().int % 10**12:012d}"
        ),
        wallet_id=None,
        amount_fen=amount,
        refunded_fen=0,
        status="SUCCESS",
        fail_code=None,
        reverse_action=None,
        tombstone=False,
        params={},
        extra={"device_info": "T001", "body": "商品", "subject": "商品", "store_id": "S001"},
        created=paid - timedelta(seconds=7),
        paid=paid,
        closed=None,
    )


def _refund(
    trade: Trade, n: int, amount: int, at: datetime, kind: str = "refund", out: str | None = None
) -> Refund:
    return Refund(
        id=n,
        trade_id=trade.id,
        out_refund_no=out or (trade.trade_no if kind == "reverse" else uid()),
        refund_no=f"50300{n:011d}",
        amount_fen=amount,
        kind=kind,
        status="SUCCESS",
        created=at,
        success=at + timedelta(seconds=3),
    )


def build(
    provider: str,
    matched: int = 40,
    accounts: tuple[WechatMerchant, AlipayMerchant] | None = None,
) -> Corpus:
    """``matched`` clean trades (a few with a clean refund) plus one of every planted discrepancy."""
    c = Corpus(provider, *(accounts or (WECHAT, ALIPAY)))
    n = 0

    def trade(
        amount: int,
        paid: datetime,
        local_status: str | None = "captured",
        local_amount: int | None = None,
        local_created: datetime | None = None,
    ) -> Trade:
        nonlocal n
        n += 1
        t = _trade(provider, n, amount, paid)
        c.trades.append(t)
        if local_status is not None:
            c.local_payments.append(
                LocalPayment(
                    t.out_trade_no,
                    local_amount or amount,
                    local_status,
                    local_created or t.created,
                    t.trade_no if local_status == "captured" else None,
                )
            )
        return t

    def refund(
        t: Trade,
        amount: int,
        at: datetime,
        local: str | None = "succeeded",
        local_amount: int | None = None,
        kind: str = "refund",
    ) -> Refund:
        nonlocal n
        n += 1
        r = _refund(t, n, amount, at, kind)
        c.refunds.append((t, r))
        if local is not None:
            c.local_refunds.append(
                LocalRefund(r.out_refund_no, t.out_trade_no, local_amount or amount, local, at)
            )
        return r

    for i in range(matched):
        t = trade(100 + 37 * i, china(DAY, 1 + i % 20, (7 * i) % 60))
        if i % 10 == 3:
            refund(t, 50, china(DAY, 22, i % 60))
    # missing_at_provider (短款): paid here, absent from the bill
    gone = uid()
    c.local_payments.append(LocalPayment(gone, 4321, "captured", china(DAY, 12, 0), None))
    c.planted.add(("missing_at_provider", "not_in_bill", gone))
    # missing_locally (长款): paid at the provider, unknown here
    orphan = trade(5000, china(DAY, 13, 0), local_status=None)
    c.planted.add(("missing_locally", "unknown_payment", orphan.out_trade_no))
    # amount_mismatch
    t = trade(1200, china(DAY, 14, 0), local_amount=1000)
    c.planted.add(("amount_mismatch", "amount_differs", t.out_trade_no))
    # status_mismatch: reversed at the provider, paid here
    t = trade(880, china(DAY, 15, 0))
    refund(t, 880, china(DAY, 15, 1), local=None, kind="reverse")
    c.planted.add(("status_mismatch", "reversed_at_provider", t.out_trade_no))
    # status_mismatch: an in-flight attempt that the provider has paid
    t = trade(990, china(DAY, 16, 0), local_status="unknown")
    c.planted.add(("status_mismatch", "in_flight_paid", t.out_trade_no))
    # fee_mismatch: charged at 0.60% instead of the contracted 0.38%
    t = trade(FEE_PLANT_AMOUNT, china(DAY, 17, 0))
    c.planted.add(("fee_mismatch", "fee_differs", t.out_trade_no))
    # duplicate: the same payment listed twice
    t = trade(2500, china(DAY, 18, 0))
    c.duplicated.append(t)
    c.planted.add(("duplicate", "repeated_out_trade_no", t.out_trade_no))
    # timing: paid here at 23:59:58, billed the next day (absent from this bill)
    late = uid()
    c.local_payments.append(LocalPayment(late, 3300, "captured", china(DAY, 23, 59, 58), None))
    c.planted.add(("timing", "expected_next_bill", late))
    # timing: recorded here at 23:59:59 the day before, billed today
    t = trade(3400, china(DAY, 0, 0, 4), local_created=china(DAY - timedelta(days=1), 23, 59, 59))
    c.planted.add(("timing", "billed_other_day", t.out_trade_no))
    # refunds: one absent from the bill, one the provider made that Tillit did not, one with another amount
    base = trade(6000, china(DAY, 9, 0))
    lost = uid()
    c.local_refunds.append(LocalRefund(lost, base.out_trade_no, 700, "succeeded", china(DAY, 10, 0)))
    c.planted.add(("missing_at_provider", "refund_not_in_bill", lost))
    r = refund(base, 600, china(DAY, 11, 0), local=None)
    c.planted.add(("missing_locally", "unknown_refund", r.out_refund_no))
    r = refund(base, 500, china(DAY, 12, 0), local_amount=400)
    c.planted.add(("amount_mismatch", "amount_differs", r.out_refund_no))
    return c


def key(d: dict[str, Any]) -> tuple[str, str, str]:
    ident = d["out_refund_no"] if d["kind"] == "refund" else d["out_trade_no"]
    return (d["class"], d["reason"], ident)


def utc_naive(value: datetime) -> datetime:
    return value.astimezone(UTC).replace(tzinfo=None)
