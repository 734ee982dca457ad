"""Settlement expectations and their outcome, pure (shared/reference/operations.md §1.4, §1.5, §2.3).

A *merchant-day* is one merchant's provider trades of one China-time day. Its expected settlement is
captures - refunds - fees (fees and returned fees per transaction, ``domain/fees.py``), due on the
trade day + the contract's cycle (T+1 by default: calendar days, or working days Monday-Friday when
the cycle says so; public holidays are not modelled). What arrived is the sum of the credits the
statements attribute to that day. ``classify`` names the outcome:

=============  ============================================================================
``pending``    not due yet (whatever has arrived so far)
``settled``    the expected amount arrived, all of it on or before the due day
``late``       past the due day: either everything arrived but after it, or nothing/part has
               arrived yet and the grace period is still running
``short``      past due + grace, something arrived but less than expected
``missing``    past due + grace, nothing arrived
``over``       more arrived than expected, with no line counted twice
``duplicate``  one trade credited by two different statement lines (takes precedence)
=============  ============================================================================

Each outcome carries its age (days past the due day, 0 before) and the next action for a person.
Statuses and the next actions are data here, declared once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

STATUSES = ("pending", "settled", "late", "short", "missing", "over", "duplicate")
OPEN_STATUSES = ("late", "short", "missing", "over", "duplicate")
DEFAULT_CYCLE_DAYS = 1
DEFAULT_GRACE_DAYS = 2
MAX_CYCLE_DAYS = 30

NEXT_ACTION: dict[str, tuple[str, str]] = {
    "pending": (
        "Nothing to do: the settlement cycle has not been reached yet.",
        "无需处理：尚未到结算周期。",
    ),
    "settled": ("Nothing to do: settled in full and on time.", "无需处理：已按时足额结算。"),
    "late": (
        "Past the settlement cycle: check the provider's fund-flow bill for the income lines and the "
        "withdrawal; if none by the end of the grace period, ask the provider (未到账).",
        "已超过结算周期：请核对资金账单中的入账与提现记录；宽限期后仍未到账请联系支付机构。",
    ),
    "short": (
        "Less arrived than expected: compare the listed trades with the statement lines (a refund, a "
        "fee at another rate or a frozen amount), then claim the difference from the provider.",
        "到账金额不足：请逐笔核对交易与资金流水（退款、费率差异或冻结），并向支付机构申请补差。",
    ),
    "missing": (
        "Nothing arrived: check whether the merchant is restricted or funds are frozen "
        "(merchant-limitations), whether the withdrawal failed (bank card problem), then open a case "
        "with the provider giving the trade day and the expected amount.",
        "未到账：请检查商户是否受限或资金冻结、提现是否失败（银行卡异常），并向支付机构提交工单。",
    ),
    "over": (
        "More arrived than expected: find the extra credit in the statement before using the money.",
        "到账金额多于应结：请先在资金流水中找出多出的入账，再动用资金。",
    ),
    "duplicate": (
        "A trade was credited twice: keep the extra amount aside and ask the provider to reverse one "
        "of the two statement lines.",
        "同一笔交易重复入账：请暂勿动用多出金额，并联系支付机构冲正其中一笔。",
    ),
}


def due_day(trade_day: date, cycle_days: int = DEFAULT_CYCLE_DAYS, *, working_days: bool = False) -> date:
    """The day a trade day's money is due: T+N calendar days, or N working days (Mon-Fri) later."""
    if not 0 <= cycle_days <= MAX_CYCLE_DAYS:
        raise ValueError(f"cycle_days must be 0..{MAX_CYCLE_DAYS}")
    if not working_days:
        return trade_day + timedelta(days=cycle_days)
    day = trade_day
    left = cycle_days
    while left > 0:
        day += timedelta(days=1)
        if day.weekday() < 5:
            left -= 1
    return day


@dataclass(frozen=True, slots=True)
class Expected:
    """What one merchant-day should bring (all fen; ``net`` = gross - refunds - fees + returned fees)."""

    trade_day: date
    due: date
    gross: int
    refunds: int
    fees: int
    fee_returns: int
    payments: int = 0
    refund_count: int = 0

    @property
    def net(self) -> int:
        return self.gross - self.refunds - self.fees + self.fee_returns


@dataclass(frozen=True, slots=True)
class Received:
    """What the statements attribute to the merchant-day: the total, the last booking day and how
    many trades were credited by more than one distinct line."""

    total: int = 0
    lines: int = 0
    last_day: date | None = None
    duplicated_trades: int = 0


@dataclass(frozen=True, slots=True)
class Outcome:
    status: str
    age_days: int
    difference: int  # received - expected (negative when short)
    next_action: str
    next_action_zh: str


def classify(
    expected: Expected, received: Received, today: date, grace_days: int = DEFAULT_GRACE_DAYS
) -> Outcome:
    """The outcome of one merchant-day on ``today`` (see the module docstring for the rules)."""
    net = expected.net
    diff = received.total - net
    age = max((today - expected.due).days, 0)
    if received.duplicated_trades > 0:
        status = "duplicate"
    elif today < expected.due and diff < 0:
        status = "pending"
    elif diff == 0:
        on_time = received.last_day is None or received.last_day <= expected.due
        status = "settled" if on_time else "late"
        if status == "late" and received.last_day is not None:
            age = (received.last_day - expected.due).days
        if status == "settled":
            age = 0
    elif diff > 0:
        status = "over"
    elif today <= expected.due + timedelta(days=grace_days):
        status = "late"
    elif received.total == 0 or received.lines == 0:
        status = "missing"
    else:
        status = "short"
    en, zh = NEXT_ACTION[status]
    return Outcome(status, age, diff, en, zh)
