"""The payment-provider port: what the integrity engine asks of WeChat Pay, Alipay (or any provider),
and the three-valued answers it gets back. Pure: adapters in ``tillit.adapters.providers`` implement it.

Rule zero (shared/reference/providers.md §0): every answer is SUCCESS, FAILED or UNKNOWN. Transport
errors, missing or unverifiable answers, "system error" and "user paying" are never FAILED.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol


class Outcome(StrEnum):
    SUCCESS = "success"  # money moved (pay) / the call was accepted and took effect
    FAILED = "failed"  # definitely did not happen; ``code`` says why
    UNKNOWN = "unknown"  # could have happened or not: resolve by query, never by guessing


@dataclass(frozen=True, slots=True)
class PayResult:
    outcome: Outcome
    code: str | None = None  # provider err_code / sub_code, or a transport code such as "TIMEOUT"
    message: str | None = None
    provider_ref: str | None = None  # WeChat transaction_id / Alipay trade_no
    user_paying: bool = False  # USERPAYING / 10003: the customer is at the password step
    latency_ms: int | None = None  # wall-clock time of the call, set by the engine (channel health)
    card_kind: str | None = None  # debit / credit / balance as the paid answer names it (domain/fees.py)


class TradeState(StrEnum):
    PAID = "paid"  # SUCCESS / TRADE_SUCCESS / TRADE_FINISHED
    WAITING = "waiting"  # NOTPAY / USERPAYING / ACCEPT / WAIT_BUYER_PAY: may still be paid
    CLOSED = "closed"  # CLOSED / REVOKED / TRADE_CLOSED (no money, or all of it returned)
    REFUNDED = "refunded"  # WeChat REFUND: was paid, then (partly) refunded
    PAY_ERROR = "pay_error"  # WeChat PAYERROR: treat as unknown and reverse
    NOT_FOUND = "not_found"  # ORDERNOTEXIST / ACQ.TRADE_NOT_EXIST (may be replication lag)
    ERROR = "error"  # the query itself failed or could not be verified: try again


@dataclass(frozen=True, slots=True)
class QueryResult:
    state: TradeState
    provider_ref: str | None = None
    amount: int | None = None  # minor units, when the provider reports it
    raw_state: str | None = None  # the provider's own word, for events and exceptions
    code: str | None = None
    card_kind: str | None = None  # debit / credit / balance as a paid answer names it (domain/fees.py)


class ReverseState(StrEnum):
    DONE = "done"  # closed if unpaid, refunded if paid (WeChat recall=N / Alipay retry_flag=N)
    RETRY = "retry"  # recall=Y / retry_flag=Y / SYSTEMERROR / USERPAYING: call again later
    EXPIRED = "expired"  # too old to reverse (REVERSE_EXPIRE): refund instead
    FAILED = "failed"  # a definite refusal that retrying will not change (e.g. ORDERNOTEXIST)
    UNKNOWN = "unknown"  # no verifiable answer: call again


@dataclass(frozen=True, slots=True)
class ReverseResult:
    state: ReverseState
    action: str | None = None  # Alipay "close" / "refund"
    code: str | None = None
    message: str | None = None


class RefundState(StrEnum):
    SUCCESS = "success"  # money returned (Alipay: query data present / fund_change; WeChat SUCCESS)
    PROCESSING = "processing"  # accepted, not finished: confirm by query
    FAILED = "failed"  # definitely refused (over-refund, closed, ...): ``code`` says why
    ABNORMAL = "abnormal"  # WeChat CHANGE / ABNORMAL: needs a person
    NOT_FOUND = "not_found"  # the provider has no such refund (REFUNDNOTEXIST / empty query)
    UNKNOWN = "unknown"  # no verifiable answer: retry with the same refund number


@dataclass(frozen=True, slots=True)
class RefundResult:
    state: RefundState
    provider_ref: str | None = None
    code: str | None = None
    message: str | None = None


class PaymentProvider(Protocol):
    """One merchant's account at one provider. Every call has an explicit timeout and never raises
    for provider or transport trouble: it answers UNKNOWN (or ERROR for queries) instead."""

    name: str  # "wechat" or "alipay"

    def pay(
        self, *, out_trade_no: str, auth_code: str, amount: int, currency: str, description: str
    ) -> PayResult: ...

    def query(self, out_trade_no: str) -> QueryResult: ...

    def reverse(self, out_trade_no: str) -> ReverseResult: ...

    def refund(
        self,
        *,
        out_trade_no: str,
        out_refund_no: str,
        total_amount: int,
        refund_amount: int,
        reason: str | None,
    ) -> RefundResult: ...

    def refund_query(self, *, out_trade_no: str, out_refund_no: str) -> RefundResult: ...


def detect_method(payment_code: str) -> str | None:
    """Route a scanned customer payment code to its provider (providers.md §6), or None.

    The rules only route; they never reject: the provider itself answers AUTH_CODE_INVALID.
    WeChat: 18 digits starting 10-15. Alipay: 16-24 digits starting 25-30.
    """
    code = payment_code.strip()
    if not code.isdigit() or not code.isascii():
        return None
    if len(code) == 18 and code[:2] in {"10", "11", "12", "13", "14", "15"}:
        return "wechat"
    if 16 <= len(code) <= 24 and 25 <= int(code[:2]) <= 30:
        return "alipay"
    return None


def mask_code(payment_code: str) -> str:
    """Keep what identifies a code in a receipt or log without letting it be replayed: first 4 and last 4."""
    code = payment_code.strip()
    if len(code) <= 8:
        return "*" * len(code)
    return code[:4] + "*" * (len(code) - 8) + code[-4:]
