"""Alipay 当面付 barcode payment adapter (``alipay.trade.pay``, ``scene=bar_code``): providers.md §2.

Requests are RSA2-signed with the app private key; every answer is verified with the Alipay public
key over the raw text of its ``<method>_response`` member exactly as received. An answer that is
missing, unsigned or does not verify is UNKNOWN (ERROR for queries), never SUCCESS or FAILED.
Amounts are integer fen here and yuan strings ("12.34") on the wire, converted without floats.
Nothing here raises for provider or transport trouble.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlencode

import httpx

from tillit.adapters.providers.http import (
    DEFAULT_CONNECT_TIMEOUT_S,
    DEFAULT_READ_TIMEOUT_S,
    MAX_BILL_BYTES,
    BillDownloadError,
    StatementNotReady,
    log_call,
    make_client,
    send,
)
from tillit.adapters.providers.signing import (
    ResponseFormatError,
    alipay_string_to_sign,
    fen_to_yuan,
    load_private_key,
    load_public_key,
    rsa2_sign,
    rsa2_verify,
    top_level_members,
    yuan_to_fen,
)
from tillit.domain.clock import Clock, SystemClock
from tillit.domain.fees import alipay_card_kind
from tillit.domain.provider import (
    Outcome,
    PaymentProvider,
    PayResult,
    QueryResult,
    RefundResult,
    RefundState,
    ReverseResult,
    ReverseState,
    TradeState,
)

PROVIDER = "alipay"
#: Alipay speaks China Standard Time (no DST) in ``timestamp`` and notification times.
CHINA_TZ = timezone(timedelta(hours=8), name="Asia/Shanghai")
TIME_FMT = "%Y-%m-%d %H:%M:%S"
MAX_SUBJECT_CHARS = 256

PAID_STATUSES = frozenset({"TRADE_SUCCESS", "TRADE_FINISHED"})
TRADE_STATES = {
    "TRADE_SUCCESS": TradeState.PAID,
    "TRADE_FINISHED": TradeState.PAID,
    "WAIT_BUYER_PAY": TradeState.WAITING,
    "TRADE_CLOSED": TradeState.CLOSED,
}
#: 40004 sub_codes that do not prove the call failed: ``ACQ.SYSTEM_ERROR`` (retry / query, §2.2)
#: and ``ACQ.TRADE_HAS_SUCCESS`` (the trade is already paid: confirm by query, like WeChat's
#: ORDERPAID). Every other 40004 sub_code is a definite business failure.
UNKNOWN_SUB_CODES = frozenset({"ACQ.SYSTEM_ERROR", "ACQ.TRADE_HAS_SUCCESS"})
#: Gateway codes that are definite: missing / illegal parameters (an integration defect).
ARGUMENT_CODES = frozenset({"40001", "40002"})
#: cancel sub_codes meaning "too late to cancel": refund instead.
CANCEL_EXPIRED_SUB_CODES = frozenset({"ACQ.TRADE_CANCEL_TIME_OUT"})


def _sub(fields: Mapping[str, Any]) -> str | None:
    """The sub_code without the gateway's ``aop.`` prefix (``aop.ACQ.SYSTEM_ERROR``)."""
    sub = fields.get("sub_code")
    return str(sub).removeprefix("aop.") if sub else None


def _text(fields: Mapping[str, Any], name: str) -> str:
    value = fields.get(name)
    return value if isinstance(value, str) else ""


def _amount(fields: Mapping[str, Any], name: str) -> int | None:
    try:
        return yuan_to_fen(_text(fields, name))
    except ValueError:
        return None


@dataclass(frozen=True)
class AlipayAccount:
    """One Alipay open-platform app. ``repr`` never shows either key.

    ``alipay_public_key_pem`` is *Alipay's* public key (it verifies answers and notifications),
    not the app's own. ``seller_id`` is the merchant's 2088… partner id (see
    :meth:`AlipayProvider.matches_account`). ``notify_url`` is sent with ``alipay.trade.pay``.
    """

    app_id: str
    app_private_key_pem: str = field(repr=False)
    alipay_public_key_pem: str = field(repr=False)
    gateway_url: str = "https://openapi.alipay.com/gateway.do"
    seller_id: str | None = None
    notify_url: str | None = None
    timeout_s: float = DEFAULT_READ_TIMEOUT_S
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S
    bill_timeout_s: float = 60.0
    #: The 直付通 sub-merchant (二级商户) this app collects for: the ``smid`` of the 进件 result, sent
    #: as ``sub_merchant.merchant_id`` on ``alipay.trade.pay`` (with ``settle_info`` to its default
    #: settlement rule). Query, cancel and refund name the trade, which already belongs to it.
    smid: str | None = None

    def __post_init__(self) -> None:
        if not self.app_id:
            raise ValueError("app_id is required")
        if min(self.timeout_s, self.connect_timeout_s, self.bill_timeout_s) <= 0:
            raise ValueError("timeouts must be positive")


@dataclass(frozen=True, slots=True)
class AlipayNotification:
    """A verified Alipay async notification (§2.6). Amounts in fen; times China time.

    The caller still checks ``out_trade_no`` and ``total_amount`` against its own record and
    deduplicates on ``notify_id`` (at-least-once delivery, §0 rule 6).
    """

    out_trade_no: str
    trade_no: str
    trade_status: str
    total_amount: int
    app_id: str
    seller_id: str | None
    notify_id: str
    gmt_payment: datetime | None
    refund_amount: int | None = None  # ``refund_fee`` on TRADE_CLOSED after a full refund

    @property
    def paid(self) -> bool:
        """Only TRADE_SUCCESS and TRADE_FINISHED mean paid."""
        return self.trade_status in PAID_STATUSES


@dataclass(frozen=True, slots=True)
class _Answer:
    """A verified ``<method>_response`` member (``fields``), or why there is none (``error``)."""

    fields: dict[str, Any]
    error: str | None
    message: str | None = None


class AlipayProvider:
    """:class:`tillit.domain.provider.PaymentProvider` for Alipay barcode payment."""

    name = PROVIDER

    def __init__(
        self, account: AlipayAccount, client: httpx.Client | None = None, clock: Clock | None = None
    ) -> None:
        self.account = account
        # Fail fast on unusable keys (the error never echoes key material).
        self._private_key = load_private_key(account.app_private_key_pem)
        self._alipay_key = load_public_key(account.alipay_public_key_pem)
        self._clock = clock or SystemClock()
        self._owns_client = client is None
        self._client = client or make_client(read_s=account.timeout_s, connect_s=account.connect_timeout_s)

    def __repr__(self) -> str:
        return f"AlipayProvider({self.account!r})"

    def close(self) -> None:
        """Close the HTTP client if this provider created it."""
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> AlipayProvider:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------- plumbing

    def _call(
        self, method: str, biz: Mapping[str, Any], *, notify: bool = False, read_s: float | None = None
    ) -> _Answer:
        common = {
            "app_id": self.account.app_id,
            "method": method,
            "format": "JSON",
            "charset": "utf-8",
            "sign_type": "RSA2",
            "timestamp": self._clock.now().astimezone(CHINA_TZ).strftime(TIME_FMT),
            "version": "1.0",
        }
        if notify and self.account.notify_url:
            common["notify_url"] = self.account.notify_url
        biz_content = json.dumps(dict(biz), ensure_ascii=False, separators=(",", ":"))
        common["sign"] = rsa2_sign(
            alipay_string_to_sign({**common, "biz_content": biz_content}), self._private_key
        )
        # As the official SDK: common parameters in the query string, biz_content in the form body.
        reply = send(
            self._client,
            "POST",
            self.account.gateway_url,
            params=common,
            content=urlencode({"biz_content": biz_content}).encode("ascii"),
            headers={"Content-Type": "application/x-www-form-urlencoded;charset=utf-8"},
            read_s=read_s or self.account.timeout_s,
            connect_s=self.account.connect_timeout_s,
        )
        if reply.error is not None:
            return _Answer({}, reply.error)
        return self._verify_answer(method, reply.body)

    def _verify_answer(self, method: str, body: bytes) -> _Answer:
        """Cut the ``<method>_response`` (or ``error_response``) member out as received and verify it."""
        try:
            members = top_level_members(body.decode("utf-8"))
        except (UnicodeDecodeError, ResponseFormatError):
            return _Answer({}, "MALFORMED_RESPONSE")
        member = members.get(method.replace(".", "_") + "_response") or members.get("error_response")
        if member is None:
            return _Answer({}, "MALFORMED_RESPONSE")
        raw, value = member
        if not isinstance(value, dict):
            return _Answer({}, "MALFORMED_RESPONSE")
        sign = members.get("sign", ("", None))[1]
        if not isinstance(sign, str) or not sign:
            # Unsigned: for diagnosis only, never for a decision.
            return _Answer(
                {}, "UNSIGNED_RESPONSE", f"unsigned answer {value.get('code')}/{value.get('sub_code')}"
            )
        if not rsa2_verify(raw, sign, self._alipay_key):
            return _Answer({}, "BAD_SIGNATURE")
        return _Answer(value, None)

    # ----------------------------------------------------------------- pay

    def pay(
        self, *, out_trade_no: str, auth_code: str, amount: int, currency: str, description: str
    ) -> PayResult:
        """``alipay.trade.pay`` with ``scene=bar_code``."""
        started = time.monotonic()
        result = self._pay(out_trade_no, auth_code, amount, currency, description)
        log_call(
            PROVIDER,
            "alipay.trade.pay",
            started,
            result.outcome.value,
            result.code,
            out_trade_no=out_trade_no,
        )
        return result

    def _pay(
        self, out_trade_no: str, auth_code: str, amount: int, currency: str, description: str
    ) -> PayResult:
        if currency != "CNY":
            return PayResult(
                Outcome.FAILED, "CURRENCY_NOT_SUPPORTED", f"Alipay F2F takes CNY, not {currency}"
            )
        if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
            return PayResult(Outcome.FAILED, "INVALID_AMOUNT", "amount must be a positive number of fen")
        biz: dict[str, Any] = {
            "out_trade_no": out_trade_no,
            "scene": "bar_code",
            "auth_code": auth_code,
            "subject": description[:MAX_SUBJECT_CHARS] or out_trade_no,
            "total_amount": fen_to_yuan(amount),
        }
        if self.account.smid:
            biz["sub_merchant"] = {"merchant_id": self.account.smid}
            biz["settle_info"] = {
                "settle_detail_infos": [{"trans_in_type": "defaultSettle", "amount": fen_to_yuan(amount)}]
            }
        answer = self._call("alipay.trade.pay", biz, notify=True)
        if answer.error is not None:
            return PayResult(Outcome.UNKNOWN, answer.error, answer.message)
        return classify_pay(answer.fields, out_trade_no, amount)

    # ----------------------------------------------------------------- query

    def query(self, out_trade_no: str) -> QueryResult:
        """``alipay.trade.query``: only TRADE_SUCCESS / TRADE_FINISHED are PAID."""
        started = time.monotonic()
        answer = self._call("alipay.trade.query", {"out_trade_no": out_trade_no})
        if answer.error is not None:
            result = QueryResult(TradeState.ERROR, code=answer.error)
        else:
            result = classify_query(answer.fields, out_trade_no)
        log_call(
            PROVIDER,
            "alipay.trade.query",
            started,
            result.state.value,
            result.code or result.raw_state,
            out_trade_no=out_trade_no,
        )
        return result

    # ----------------------------------------------------------------- cancel

    def reverse(self, out_trade_no: str) -> ReverseResult:
        """``alipay.trade.cancel``: unpaid -> ``action=close``, paid -> ``action=refund``; repeat while
        ``retry_flag=Y``."""
        started = time.monotonic()
        answer = self._call("alipay.trade.cancel", {"out_trade_no": out_trade_no})
        if answer.error is not None:
            result = ReverseResult(ReverseState.UNKNOWN, code=answer.error, message=answer.message)
        else:
            result = classify_cancel(answer.fields)
        log_call(
            PROVIDER,
            "alipay.trade.cancel",
            started,
            result.state.value,
            result.code,
            out_trade_no=out_trade_no,
        )
        return result

    # ----------------------------------------------------------------- refunds

    def refund(
        self,
        *,
        out_trade_no: str,
        out_refund_no: str,
        total_amount: int,
        refund_amount: int,
        reason: str | None,
    ) -> RefundResult:
        """``alipay.trade.refund`` keyed on ``out_request_no``: SUCCESS when ``fund_change=Y``; a
        replay (``fund_change=N``) is PROCESSING, to be confirmed by the refund query (§2.5)."""
        started = time.monotonic()
        if min(total_amount, refund_amount) <= 0:
            result = RefundResult(
                RefundState.FAILED, code="INVALID_AMOUNT", message="amounts must be positive"
            )
        else:
            biz = {
                "out_trade_no": out_trade_no,
                "out_request_no": out_refund_no,
                "refund_amount": fen_to_yuan(refund_amount),
            }
            if reason:
                biz["refund_reason"] = reason[:256]
            answer = self._call("alipay.trade.refund", biz)
            if answer.error is not None:
                result = RefundResult(RefundState.UNKNOWN, code=answer.error, message=answer.message)
            else:
                result = classify_refund(answer.fields, out_trade_no)
        log_call(
            PROVIDER,
            "alipay.trade.refund",
            started,
            result.state.value,
            result.code,
            out_trade_no=out_trade_no,
            out_refund_no=out_refund_no,
        )
        return result

    def refund_query(self, *, out_trade_no: str, out_refund_no: str) -> RefundResult:
        """``alipay.trade.fastpay.refund.query``: refund data present = refunded; empty = no refund."""
        started = time.monotonic()
        answer = self._call(
            "alipay.trade.fastpay.refund.query",
            {"out_trade_no": out_trade_no, "out_request_no": out_refund_no},
        )
        if answer.error is not None:
            result = RefundResult(RefundState.UNKNOWN, code=answer.error, message=answer.message)
        else:
            result = classify_refund_query(answer.fields, out_trade_no, out_refund_no)
        log_call(
            PROVIDER,
            "alipay.trade.fastpay.refund.query",
            started,
            result.state.value,
            result.code,
            out_trade_no=out_trade_no,
            out_refund_no=out_refund_no,
        )
        return result

    # ----------------------------------------------------------------- notifications

    def verify_notification(self, form: Mapping[str, str]) -> AlipayNotification | None:
        """A verified async notification, or None.

        None when the RSA2 signature (over every parameter except ``sign`` and ``sign_type``,
        sorted, §2.1) does not verify with the Alipay public key, when ``sign_type`` is not RSA2,
        or when a required field is missing or malformed. A verified notification is returned
        as is: the caller checks ``app_id``, ``seller_id``, ``out_trade_no`` and ``total_amount``
        against its own records (and records a mismatch rather than dropping it), see
        :meth:`matches_account`.
        """
        started = time.monotonic()
        result, reason = self._verify_notification(form)
        log_call(
            PROVIDER,
            "notification",
            started,
            "accepted" if result else "rejected",
            reason,
            out_trade_no=str(form.get("out_trade_no", ""))[:64],
        )
        return result

    def matches_account(self, note: AlipayNotification) -> bool:
        """True when a verified notification is for this app (and this seller, if ``seller_id`` is set)."""
        if note.app_id != self.account.app_id:
            return False
        return not (self.account.seller_id and note.seller_id != self.account.seller_id)

    def _verify_notification(self, form: Mapping[str, str]) -> tuple[AlipayNotification | None, str | None]:
        params = {str(k): str(v) for k, v in form.items()}
        sign = params.get("sign", "")
        if not sign or params.get("sign_type", "RSA2") != "RSA2":
            return None, "UNSIGNED"
        if not rsa2_verify(
            alipay_string_to_sign(params, exclude=("sign", "sign_type")), sign, self._alipay_key
        ):
            return None, "BAD_SIGNATURE"
        seller_id = params.get("seller_id") or None
        total = _amount(params, "total_amount")
        required = ("out_trade_no", "trade_no", "trade_status", "notify_id", "app_id")
        if total is None or not all(params.get(name) for name in required):
            return None, "MISSING_FIELDS"
        refund_text = params.get("refund_fee")
        return (
            AlipayNotification(
                out_trade_no=params["out_trade_no"],
                trade_no=params["trade_no"],
                trade_status=params["trade_status"],
                total_amount=total,
                app_id=params["app_id"],
                seller_id=seller_id,
                notify_id=params["notify_id"],
                gmt_payment=_china_time(params.get("gmt_payment")),
                refund_amount=_amount(params, "refund_fee") if refund_text else None,
            ),
            None,
        )

    # ----------------------------------------------------------------- bills

    def download_bill(self, bill_date: date) -> bytes | None:
        """The day's ``trade`` bill: ``alipay.data.dataservice.bill.downloadurl.query`` then GET the
        URL (valid 30 s). Returns the ZIP bytes (GBK CSVs, §2.7), or None when Alipay has no bill
        for that day (``isp.bill_not_exist``; daily bills exist from 10:00 next day). Any other
        failure raises :class:`BillDownloadError`: it never looks like "no bill"."""
        started = time.monotonic()
        try:
            data = self._download_bill(bill_date)
        except BillDownloadError as exc:
            log_call(PROVIDER, "bill.download", started, "error", exc.code)
            raise
        log_call(PROVIDER, "bill.download", started, "none" if data is None else "ok", None)
        return data

    def download_statement(self, bill_date: date) -> bytes | None:
        """The day's account statement (账务明细, ``bill_type=signcustomer``, operations.md §2.1): the
        same URL query and 30-second download as the trade bill; the ZIP bytes (GBK CSVs). Before the
        file exists (T+1 after 10:00) Alipay answers ``isp.bill_not_exist``: that is
        :class:`StatementNotReady` here (retry later), never an empty day."""
        started = time.monotonic()
        try:
            data = self._download_bill(bill_date, "signcustomer")
            if data is None:
                raise StatementNotReady("isp.bill_not_exist", "the account statement is not there yet")
        except BillDownloadError as exc:
            log_call(PROVIDER, "signcustomer.download", started, "error", exc.code)
            raise
        log_call(PROVIDER, "signcustomer.download", started, "ok", None)
        return data

    def _download_bill(self, bill_date: date, bill_type: str = "trade") -> bytes | None:
        method = "alipay.data.dataservice.bill.downloadurl.query"
        answer = self._call(method, {"bill_type": bill_type, "bill_date": bill_date.isoformat()})
        if answer.error is not None:
            raise BillDownloadError(answer.error, answer.message or "bill URL query failed")
        fields = answer.fields
        if fields.get("code") != "10000":
            if _sub(fields) == "isp.bill_not_exist":
                return None
            raise BillDownloadError(_sub(fields) or str(fields.get("code")), _text(fields, "sub_msg"))
        url = _text(fields, "bill_download_url")
        if not url.startswith(("https://", "http://")):
            raise BillDownloadError("NO_DOWNLOAD_URL", "no usable bill_download_url")
        reply = send(
            self._client,
            "GET",
            url,
            read_s=self.account.bill_timeout_s,
            connect_s=self.account.connect_timeout_s,
            max_bytes=MAX_BILL_BYTES,
            follow_redirects=True,
        )
        if reply.error is not None:
            raise BillDownloadError(reply.error, "bill file download failed")
        if not reply.body.startswith(b"PK\x03\x04"):
            raise BillDownloadError("NOT_A_ZIP", "the bill file is not a ZIP archive")
        return reply.body


def _china_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.strptime(text, TIME_FMT).replace(tzinfo=CHINA_TZ)
    except ValueError:
        return None


def _conforms(provider: AlipayProvider) -> PaymentProvider:
    """Static check (mypy): the adapter implements the port exactly."""
    return provider


# --------------------------------------------------------------------------- classification


def classify_pay(fields: Mapping[str, Any], out_trade_no: str, amount: int) -> PayResult:
    """A verified ``alipay_trade_pay_response`` as SUCCESS / FAILED / UNKNOWN (providers.md §2.2)."""
    code = _text(fields, "code")
    sub = _sub(fields)
    message = _text(fields, "sub_msg") or _text(fields, "msg") or None
    trade_no = _text(fields, "trade_no") or None
    if code == "10000":
        status = _text(fields, "trade_status")
        if status and status not in PAID_STATUSES:
            return PayResult(Outcome.UNKNOWN, status, message, provider_ref=trade_no)
        reported = _amount(fields, "total_amount")
        if _text(fields, "out_trade_no") not in ("", out_trade_no) or reported not in (None, amount):
            return PayResult(Outcome.UNKNOWN, "ANSWER_MISMATCH", "answer does not match the request")
        return PayResult(
            Outcome.SUCCESS, provider_ref=trade_no, card_kind=alipay_card_kind(fields.get("fund_bill_list"))
        )
    if code == "10003":
        return PayResult(Outcome.UNKNOWN, sub or "10003", message, provider_ref=trade_no, user_paying=True)
    if code == "40004":
        if sub in UNKNOWN_SUB_CODES:
            return PayResult(Outcome.UNKNOWN, sub, message, provider_ref=trade_no)
        return PayResult(Outcome.FAILED, sub or code, message)
    if code in ARGUMENT_CODES:
        return PayResult(Outcome.FAILED, sub or code, message)
    # 20000 (system error) and anything unrecognised: query.
    return PayResult(Outcome.UNKNOWN, sub or code or "NO_CODE", message, provider_ref=trade_no)


def classify_query(fields: Mapping[str, Any], out_trade_no: str) -> QueryResult:
    """A verified ``alipay_trade_query_response`` as a :class:`TradeState`."""
    code = _text(fields, "code")
    if code != "10000":
        sub = _sub(fields)
        if code == "40004" and sub == "ACQ.TRADE_NOT_EXIST":
            return QueryResult(TradeState.NOT_FOUND, code=sub)
        return QueryResult(TradeState.ERROR, code=sub or code or "NO_CODE")
    if _text(fields, "out_trade_no") not in ("", out_trade_no):
        return QueryResult(TradeState.ERROR, code="ANSWER_MISMATCH")
    raw = _text(fields, "trade_status")
    return QueryResult(
        TRADE_STATES.get(raw, TradeState.ERROR),
        provider_ref=_text(fields, "trade_no") or None,
        amount=_amount(fields, "total_amount"),
        raw_state=raw or None,
        code=None if raw in TRADE_STATES else "UNKNOWN_TRADE_STATUS",
        card_kind=alipay_card_kind(fields.get("fund_bill_list")),
    )


def classify_cancel(fields: Mapping[str, Any]) -> ReverseResult:
    """A verified ``alipay_trade_cancel_response``: DONE only on 10000 with ``retry_flag=N``."""
    code = _text(fields, "code")
    sub = _sub(fields)
    message = _text(fields, "sub_msg") or None
    action = _text(fields, "action") or None
    if _text(fields, "retry_flag") == "Y":
        return ReverseResult(ReverseState.RETRY, action, sub or code or "RETRY_FLAG", message)
    if code == "10000":
        return ReverseResult(ReverseState.DONE, action)
    if code == "20000" or sub == "ACQ.SYSTEM_ERROR":
        return ReverseResult(ReverseState.RETRY, action, sub or code, message)
    if code == "40004" and sub in CANCEL_EXPIRED_SUB_CODES:
        return ReverseResult(ReverseState.EXPIRED, action, sub, message)
    if code == "40004" or code in ARGUMENT_CODES:
        return ReverseResult(ReverseState.FAILED, action, sub or code, message)
    return ReverseResult(ReverseState.UNKNOWN, action, sub or code or "NO_CODE", message)


def classify_refund(fields: Mapping[str, Any], out_trade_no: str) -> RefundResult:
    """A verified ``alipay_trade_refund_response``: money moved on this call only if ``fund_change=Y``."""
    code = _text(fields, "code")
    sub = _sub(fields)
    message = _text(fields, "sub_msg") or None
    if code == "10000":
        if _text(fields, "out_trade_no") not in ("", out_trade_no):
            return RefundResult(RefundState.UNKNOWN, code="ANSWER_MISMATCH")
        if _text(fields, "fund_change") == "Y":
            return RefundResult(RefundState.SUCCESS)
        # The same out_request_no again (or a refund still settling): confirm by refund query.
        return RefundResult(RefundState.PROCESSING, code="FUND_CHANGE_N")
    if code == "40004" and sub not in UNKNOWN_SUB_CODES:
        return RefundResult(RefundState.FAILED, code=sub or code, message=message)
    if code in ARGUMENT_CODES:
        return RefundResult(RefundState.FAILED, code=sub or code, message=message)
    return RefundResult(RefundState.UNKNOWN, code=sub or code or "NO_CODE", message=message)


def classify_refund_query(fields: Mapping[str, Any], out_trade_no: str, out_refund_no: str) -> RefundResult:
    """A verified ``alipay_trade_fastpay_refund_query_response`` (§2.5)."""
    code = _text(fields, "code")
    if code != "10000":
        sub = _sub(fields)
        if code == "40004" and sub == "ACQ.TRADE_NOT_EXIST":
            return RefundResult(RefundState.NOT_FOUND, code=sub)
        return RefundResult(
            RefundState.UNKNOWN, code=sub or code or "NO_CODE", message=_text(fields, "sub_msg") or None
        )
    if not (_text(fields, "refund_amount") and _text(fields, "out_request_no")):
        return RefundResult(RefundState.NOT_FOUND)
    if _text(fields, "out_request_no") != out_refund_no or _text(fields, "out_trade_no") not in (
        "",
        out_trade_no,
    ):
        return RefundResult(RefundState.UNKNOWN, code="ANSWER_MISMATCH")
    status = _text(fields, "refund_status")
    if status and status != "REFUND_SUCCESS":
        return RefundResult(RefundState.PROCESSING, code=status)
    return RefundResult(RefundState.SUCCESS)
