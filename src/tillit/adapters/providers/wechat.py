"""WeChat Pay v2 barcode payment (付款码支付 / micropay) adapter: providers.md §1.

Every answer is read in the protocol's order (§1.1): transport, then ``return_code``
(communication), then the signature (every signed answer is verified; an answer that does not
verify is UNKNOWN), then ``result_code``/``err_code`` (business), then ``trade_state``.
Nothing here raises for provider or transport trouble.
"""

from __future__ import annotations

import base64
import binascii
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date

import httpx

from tillit.adapters.providers.http import (
    DEFAULT_CONNECT_TIMEOUT_S,
    DEFAULT_READ_TIMEOUT_S,
    MAX_API_BYTES,
    MAX_BILL_BYTES,
    BillDownloadError,
    Reply,
    StatementFile,
    StatementNotReady,
    gunzip_bounded,
    log_call,
    make_client,
    send,
)
from tillit.adapters.providers.signing import (
    WECHAT_SIGN_TYPES,
    XmlError,
    parse_wechat_xml,
    to_wechat_xml,
    wechat_sign,
    wechat_verify,
)
from tillit.domain.fees import wechat_card_kind
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

PROVIDER = "wechat"
MAX_BODY_CHARS = 128  # micropay ``body`` is String(128)

#: micropay err_codes that are definite: the payment did not happen (§1.3).
PAY_FAILED_CODES = frozenset(
    {
        "NOTENOUGH",
        "AUTHCODEEXPIRE",
        "AUTH_CODE_INVALID",
        "AUTH_CODE_ERROR",
        "ORDERREVERSED",
        "ORDERCLOSED",
        "NOTSUPORTCARD",
        "BUYER_MISMATCH",
        "TRADE_ERROR",
        "NOAUTH",
        "PARAM_ERROR",
        "SIGNERROR",
        "LACK_PARAMS",
    }
)
#: micropay err_codes after which the payment may have happened: query (§1.3). ``ORDERPAID``
#: means paid, confirmed by query; ``OUT_TRADE_NO_USED`` means query the original. Any code not
#: in either set is also UNKNOWN: an unrecognised answer is never read as a failure.
PAY_UNKNOWN_CODES = frozenset({"SYSTEMERROR", "BANKERROR", "USERPAYING", "ORDERPAID", "OUT_TRADE_NO_USED"})

TRADE_STATES = {
    "SUCCESS": TradeState.PAID,
    "NOTPAY": TradeState.WAITING,
    "USERPAYING": TradeState.WAITING,
    "ACCEPT": TradeState.WAITING,
    "CLOSED": TradeState.CLOSED,
    "REVOKED": TradeState.CLOSED,
    "REFUND": TradeState.REFUNDED,
    "PAYERROR": TradeState.PAY_ERROR,
}

#: reverse err_codes worth calling again (with ``recall=Y`` any code is retried).
REVERSE_RETRY_CODES = frozenset({"SYSTEMERROR", "USERPAYING", "BANKERROR", "FREQUENCY_LIMITED"})

#: refund err_codes that are definite refusals (over-refund and closed trades come as ``ERROR``
#: with a description). Anything else (SYSTEMERROR, BIZERR_NEED_RETRY, FREQUENCY_LIMITED, …) is
#: UNKNOWN: retry later with the same ``out_refund_no``.
REFUND_FAILED_CODES = frozenset(
    {
        "ERROR",
        "PARAM_ERROR",
        "ORDERNOTEXIST",
        "TRADE_OVERDUE",
        "INVALID_TRANSACTIONID",
        "NOTENOUGH",
        "USER_ACCOUNT_ABNORMAL",
        "INVALID_REQ_TOO_MUCH",
        "NOAUTH",
        "APPID_NOT_EXIST",
        "MCHID_NOT_EXIST",
        "SIGNERROR",
        "LACK_PARAMS",
        "XML_FORMAT_ERROR",
        "REQUIRE_POST_METHOD",
        "POST_DATA_EMPTY",
        "CHARSET_ERROR",
    }
)

REFUND_STATES = {
    "SUCCESS": RefundState.SUCCESS,
    "PROCESSING": RefundState.PROCESSING,
    "REFUNDCLOSE": RefundState.FAILED,
    "CHANGE": RefundState.ABNORMAL,
}


@dataclass(frozen=True)
class WeChatAccount:
    """One WeChat Pay v2 merchant account. ``repr`` never shows the API key.

    ``timeout_s`` is the read timeout of every call (the micropay answer can take seconds while
    WeChat talks to the bank); ``connect_timeout_s`` bounds the TCP/TLS handshake.
    ``cert_file``/``key_file`` are the merchant API certificate for ``/secapi/`` (reverse,
    refund); used only when the provider builds its own HTTP client.
    """

    appid: str
    mch_id: str
    api_key: str = field(repr=False)
    base_url: str = "https://api.mch.weixin.qq.com"
    sign_type: str = "HMAC-SHA256"
    timeout_s: float = DEFAULT_READ_TIMEOUT_S
    connect_timeout_s: float = DEFAULT_CONNECT_TIMEOUT_S
    bill_timeout_s: float = 60.0
    spbill_create_ip: str = "127.0.0.1"
    cert_file: str | None = field(default=None, repr=False)
    key_file: str | None = field(default=None, repr=False)
    #: The sub-merchant (特约商户) this account takes payments for in the service-provider mode: set
    #: from the 进件 result (``sub_mchid``) and sent as ``sub_mch_id`` on every call (pay, query,
    #: reverse, refund, refund query, bill). None for an ordinary (direct) merchant.
    sub_mch_id: str | None = None

    def __post_init__(self) -> None:
        if self.sign_type not in WECHAT_SIGN_TYPES:
            raise ValueError(f"sign_type must be one of {WECHAT_SIGN_TYPES}")
        if not (self.appid and self.mch_id and self.api_key):
            raise ValueError("appid, mch_id and api_key are required")
        if min(self.timeout_s, self.connect_timeout_s, self.bill_timeout_s) <= 0:
            raise ValueError("timeouts must be positive")


@dataclass(frozen=True, slots=True)
class _Answer:
    """A verified answer (``fields``), or why there is none (``error``)."""

    fields: dict[str, str]
    error: str | None
    message: str | None = None


class WeChatPayProvider:
    """:class:`tillit.domain.provider.PaymentProvider` for WeChat Pay v2 micropay."""

    name = PROVIDER

    def __init__(self, account: WeChatAccount, client: httpx.Client | None = None) -> None:
        self.account = account
        self._owns_client = client is None
        self._client = client or make_client(
            read_s=account.timeout_s,
            connect_s=account.connect_timeout_s,
            cert_file=account.cert_file,
            key_file=account.key_file,
        )

    def __repr__(self) -> str:
        return f"WeChatPayProvider({self.account!r})"

    def close(self) -> None:
        """Close the HTTP client if this provider created it."""
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> WeChatPayProvider:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ----------------------------------------------------------------- plumbing

    def _request(self, fields: Mapping[str, str]) -> bytes:
        data = {
            "appid": self.account.appid,
            "mch_id": self.account.mch_id,
            "nonce_str": secrets.token_hex(16),
            **({"sub_mch_id": self.account.sub_mch_id} if self.account.sub_mch_id else {}),
            **{k: v for k, v in fields.items() if v != ""},
        }
        if self.account.sign_type != "MD5":
            data["sign_type"] = self.account.sign_type
        data["sign"] = wechat_sign(data, self.account.api_key, self.account.sign_type)
        return to_wechat_xml(data)

    def _post(
        self,
        path: str,
        fields: Mapping[str, str],
        *,
        read_s: float | None = None,
        max_bytes: int = MAX_API_BYTES,
    ) -> Reply:
        return send(
            self._client,
            "POST",
            self.account.base_url.rstrip("/") + path,
            content=self._request(fields),
            headers={"Content-Type": "text/xml; charset=utf-8"},
            read_s=read_s or self.account.timeout_s,
            connect_s=self.account.connect_timeout_s,
            max_bytes=max_bytes,
        )

    def _verified(self, reply: Reply) -> _Answer:
        """Transport -> return_code -> signature -> account. ``fields`` only when all pass."""
        if reply.error is not None:
            return _Answer({}, reply.error)
        if not reply.body.strip():
            return _Answer({}, "EMPTY_RESPONSE")
        try:
            fields = parse_wechat_xml(reply.body)
        except XmlError:
            return _Answer({}, "MALFORMED_RESPONSE")
        if fields.get("return_code") != "SUCCESS":
            # Communication failure; WeChat does not sign these answers.
            return _Answer({}, "RETURN_FAIL", fields.get("return_msg"))
        sign_type = fields.get("sign_type") or self.account.sign_type
        if not wechat_verify(fields, self.account.api_key, sign_type):
            return _Answer({}, "BAD_SIGNATURE")
        theirs = (
            ("appid", self.account.appid),
            ("mch_id", self.account.mch_id),
            ("sub_mch_id", self.account.sub_mch_id or ""),
        )
        for name, ours in theirs:
            if fields.get(name, ours) != ours:
                return _Answer({}, "ACCOUNT_MISMATCH")
        return _Answer(fields, None)

    # ----------------------------------------------------------------- pay

    def pay(
        self, *, out_trade_no: str, auth_code: str, amount: int, currency: str, description: str
    ) -> PayResult:
        """``/pay/micropay``: SUCCESS only on result_code=SUCCESS with a verified signature."""
        started = time.monotonic()
        result = self._pay(out_trade_no, auth_code, amount, currency, description)
        log_call(PROVIDER, "micropay", started, result.outcome.value, result.code, out_trade_no=out_trade_no)
        return result

    def _pay(
        self, out_trade_no: str, auth_code: str, amount: int, currency: str, description: str
    ) -> PayResult:
        if currency != "CNY":
            return PayResult(
                Outcome.FAILED, "CURRENCY_NOT_SUPPORTED", f"WeChat micropay takes CNY, not {currency}"
            )
        if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
            return PayResult(Outcome.FAILED, "INVALID_AMOUNT", "amount must be a positive number of fen")
        answer = self._verified(
            self._post(
                "/pay/micropay",
                {
                    "body": description[:MAX_BODY_CHARS] or out_trade_no,
                    "out_trade_no": out_trade_no,
                    "total_fee": str(amount),
                    "fee_type": "CNY",
                    "spbill_create_ip": self.account.spbill_create_ip,
                    "auth_code": auth_code,
                },
            )
        )
        if answer.error is not None:
            return PayResult(Outcome.UNKNOWN, answer.error, answer.message)
        return classify_pay(answer.fields, out_trade_no, amount)

    # ----------------------------------------------------------------- query

    def query(self, out_trade_no: str) -> QueryResult:
        """``/pay/orderquery``: ``trade_state`` is the final word (§1.2)."""
        started = time.monotonic()
        result = self._query(out_trade_no)
        log_call(
            PROVIDER,
            "orderquery",
            started,
            result.state.value,
            result.code or result.raw_state,
            out_trade_no=out_trade_no,
        )
        return result

    def _query(self, out_trade_no: str) -> QueryResult:
        answer = self._verified(self._post("/pay/orderquery", {"out_trade_no": out_trade_no}))
        if answer.error is not None:
            return QueryResult(TradeState.ERROR, code=answer.error)
        return classify_query(answer.fields, out_trade_no)

    # ----------------------------------------------------------------- reverse

    def reverse(self, out_trade_no: str) -> ReverseResult:
        """``/secapi/pay/reverse``: unpaid -> closed, paid -> refunded; repeat while ``recall=Y``."""
        started = time.monotonic()
        answer = self._verified(self._post("/secapi/pay/reverse", {"out_trade_no": out_trade_no}))
        if answer.error is not None:
            result = ReverseResult(ReverseState.UNKNOWN, code=answer.error, message=answer.message)
        else:
            result = classify_reverse(answer.fields)
        log_call(PROVIDER, "reverse", started, result.state.value, result.code, out_trade_no=out_trade_no)
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
        """``/secapi/pay/refund``: an accepted refund is PROCESSING until the refund query says SUCCESS
        ("仅代表业务的受理情况", §1.5). Retry only with the same ``out_refund_no``."""
        started = time.monotonic()
        if min(total_amount, refund_amount) <= 0:
            result = RefundResult(
                RefundState.FAILED, code="INVALID_AMOUNT", message="amounts must be positive"
            )
        else:
            fields = {
                "out_trade_no": out_trade_no,
                "out_refund_no": out_refund_no,
                "total_fee": str(total_amount),
                "refund_fee": str(refund_amount),
                "refund_desc": (reason or "")[:80],
            }
            answer = self._verified(self._post("/secapi/pay/refund", fields))
            if answer.error is not None:
                result = RefundResult(RefundState.UNKNOWN, code=answer.error, message=answer.message)
            else:
                result = classify_refund(answer.fields, out_trade_no, out_refund_no)
        log_call(
            PROVIDER,
            "refund",
            started,
            result.state.value,
            result.code,
            out_trade_no=out_trade_no,
            out_refund_no=out_refund_no,
        )
        return result

    def refund_query(self, *, out_trade_no: str, out_refund_no: str) -> RefundResult:
        """``/pay/refundquery`` by ``out_refund_no``: ``refund_status_$n`` of that refund."""
        started = time.monotonic()
        answer = self._verified(self._post("/pay/refundquery", {"out_refund_no": out_refund_no}))
        if answer.error is not None:
            result = RefundResult(RefundState.UNKNOWN, code=answer.error, message=answer.message)
        else:
            result = classify_refund_query(answer.fields, out_trade_no, out_refund_no)
        log_call(
            PROVIDER,
            "refundquery",
            started,
            result.state.value,
            result.code,
            out_trade_no=out_trade_no,
            out_refund_no=out_refund_no,
        )
        return result

    # ----------------------------------------------------------------- bills

    def download_bill(self, bill_date: date) -> bytes | None:
        """``/pay/downloadbill`` (``bill_type=ALL``, plain text): the bill's raw bytes (UTF-8 CSV text),
        or None for "No Bill Exist" (no trades that day, or not generated yet: fetch after 10:00 next
        day, §1.6). Any other failure raises :class:`BillDownloadError`: it never looks like "no bill".
        """
        started = time.monotonic()
        try:
            data = self._download_bill(bill_date)
        except BillDownloadError as exc:
            log_call(PROVIDER, "downloadbill", started, "error", exc.code)
            raise
        log_call(PROVIDER, "downloadbill", started, "none" if data is None else "ok", None)
        return data

    def _download_bill(self, bill_date: date) -> bytes | None:
        reply = self._post(
            "/pay/downloadbill",
            {"bill_date": bill_date.strftime("%Y%m%d"), "bill_type": "ALL"},
            read_s=self.account.bill_timeout_s,
            max_bytes=MAX_BILL_BYTES,
        )
        if reply.error is not None:
            raise BillDownloadError(reply.error, "bill download failed")
        body = reply.body
        if not body.lstrip().startswith(b"<xml"):
            if not body.strip():
                raise BillDownloadError("EMPTY_RESPONSE", "empty bill body")
            return body
        try:
            fields = parse_wechat_xml(body)
        except XmlError as exc:
            raise BillDownloadError("MALFORMED_RESPONSE", "bill answer is neither a bill nor XML") from exc
        message = fields.get("return_msg", "")
        if fields.get("return_code") == "FAIL" and (
            message.strip().lower() == "no bill exist" or fields.get("error_code") == "20002"
        ):
            return None
        code = fields.get("error_code") or fields.get("err_code") or fields.get("return_code") or "FAIL"
        raise BillDownloadError(code, message or "bill not available")

    # ----------------------------------------------------------------- fund-flow statement

    def download_statement(self, bill_date: date) -> StatementFile | None:
        """``/pay/downloadfundflow`` (operations.md §1.1): the BASIC account's 资金账单 of ``bill_date``
        as UTF-8 CSV bytes, asked gzipped (``tar_type=GZIP``) and inflated here. Always signed
        HMAC-SHA256 (the only type the API takes); the client certificate is the account's, as for
        refunds. None for ``NO_BILL_EXIST`` (no movement that day); :class:`StatementNotReady` for
        ``BILL_CREATING`` (retry after 10:00); any other failure raises :class:`BillDownloadError`.
        The file comes with the SHA-1 the answer's ``Digest: SHA=`` header gives (of the uncompressed
        file, hex or base64): the import refuses a file whose digest differs."""
        started = time.monotonic()
        try:
            data = self._download_statement(bill_date)
        except BillDownloadError as exc:
            log_call(PROVIDER, "downloadfundflow", started, "error", exc.code)
            raise
        log_call(PROVIDER, "downloadfundflow", started, "none" if data is None else "ok", None)
        return data

    def _download_statement(self, bill_date: date) -> StatementFile | None:
        data = {
            "appid": self.account.appid,
            "mch_id": self.account.mch_id,
            "nonce_str": secrets.token_hex(16),
            "sign_type": "HMAC-SHA256",
            "bill_date": bill_date.strftime("%Y%m%d"),
            "account_type": "Basic",
            "tar_type": "GZIP",
        }
        data["sign"] = wechat_sign(data, self.account.api_key, "HMAC-SHA256")
        reply = send(
            self._client,
            "POST",
            self.account.base_url.rstrip("/") + "/pay/downloadfundflow",
            content=to_wechat_xml(data),
            headers={"Content-Type": "text/xml; charset=utf-8"},
            read_s=self.account.bill_timeout_s,
            connect_s=self.account.connect_timeout_s,
            max_bytes=MAX_BILL_BYTES,
        )
        if reply.error is not None:
            raise BillDownloadError(reply.error, "fund-flow download failed")
        body = reply.body
        digest = sha1_digest((reply.headers or {}).get("digest"))
        if body.startswith(b"\x1f\x8b"):
            return StatementFile(gunzip_bounded(body), "SHA1" if digest else None, digest)
        if not body.lstrip().startswith(b"<xml"):
            if not body.strip():
                raise BillDownloadError("EMPTY_RESPONSE", "empty statement body")
            return StatementFile(body, "SHA1" if digest else None, digest)
        try:
            fields = parse_wechat_xml(body)
        except XmlError as exc:
            raise BillDownloadError("MALFORMED_RESPONSE", "answer is neither a statement nor XML") from exc
        code = fields.get("error_code") or fields.get("err_code") or ""
        message = fields.get("return_msg", "")
        if "NO_BILL_EXIST" in (message, code) or code == "20002":
            return None
        if "BILL_CREATING" in (message, code) or code == "20003":
            raise StatementNotReady("BILL_CREATING", message or "the statement is being generated")
        code = code or fields.get("return_code") or "FAIL"
        raise BillDownloadError(code, message or "statement not available")


def sha1_digest(header: str | None) -> str | None:
    """The SHA-1 (lower-case hex) of an HTTP ``Digest`` header's ``SHA=`` member, given as hex or as
    base64 (RFC 3230); None when there is none. A malformed value is returned as written, so the
    import's comparison refuses the file rather than skip the check."""
    for part in (header or "").split(","):
        name, _, value = part.strip().partition("=")
        if name.strip().upper() != "SHA" or not value.strip():
            continue
        value = value.strip()
        if len(value) == 40 and all(c in "0123456789abcdefABCDEF" for c in value):
            return value.lower()
        try:
            raw = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            return value
        return raw.hex() if len(raw) == 20 else value
    return None


def _conforms(provider: WeChatPayProvider) -> PaymentProvider:
    """Static check (mypy): the adapter implements the port exactly."""
    return provider


# --------------------------------------------------------------------------- classification


def classify_pay(fields: Mapping[str, str], out_trade_no: str, amount: int) -> PayResult:
    """A verified micropay answer as SUCCESS / FAILED / UNKNOWN (providers.md §1.3)."""
    result_code = fields.get("result_code")
    if result_code == "SUCCESS":
        if fields.get("out_trade_no", out_trade_no) != out_trade_no or fields.get(
            "total_fee", str(amount)
        ) != str(amount):
            # A "paid" answer about another trade or amount proves nothing about ours.
            return PayResult(Outcome.UNKNOWN, "ANSWER_MISMATCH", "answer does not match the request")
        return PayResult(
            Outcome.SUCCESS,
            provider_ref=fields.get("transaction_id") or None,
            card_kind=wechat_card_kind(fields.get("bank_type")),
        )
    code = fields.get("err_code") or None
    message = fields.get("err_code_des") or None
    if result_code == "FAIL" and code in PAY_FAILED_CODES:
        return PayResult(Outcome.FAILED, code, message)
    return PayResult(
        Outcome.UNKNOWN,
        code or "NO_RESULT_CODE",
        message,
        provider_ref=fields.get("transaction_id") or None,
        user_paying=code == "USERPAYING",
    )


def classify_query(fields: Mapping[str, str], out_trade_no: str) -> QueryResult:
    """A verified orderquery answer as a :class:`TradeState`."""
    if fields.get("result_code") != "SUCCESS":
        code = fields.get("err_code") or "NO_RESULT_CODE"
        if code == "ORDERNOTEXIST":
            return QueryResult(TradeState.NOT_FOUND, code=code)
        return QueryResult(TradeState.ERROR, code=code)
    if fields.get("out_trade_no", out_trade_no) != out_trade_no:
        return QueryResult(TradeState.ERROR, code="ANSWER_MISMATCH")
    raw = fields.get("trade_state", "")
    amount_text = fields.get("total_fee", "")
    return QueryResult(
        TRADE_STATES.get(raw, TradeState.ERROR),
        provider_ref=fields.get("transaction_id") or None,
        amount=int(amount_text) if amount_text.isdigit() else None,
        raw_state=raw or None,
        code=None if raw in TRADE_STATES else "UNKNOWN_TRADE_STATE",
        card_kind=wechat_card_kind(fields.get("bank_type")) if raw in ("SUCCESS", "REFUND") else None,
    )


def classify_reverse(fields: Mapping[str, str]) -> ReverseResult:
    """A verified reverse answer: DONE only on SUCCESS with ``recall=N``."""
    recall = fields.get("recall", "")
    code = fields.get("err_code") or None
    message = fields.get("err_code_des") or None
    if recall == "Y":
        return ReverseResult(ReverseState.RETRY, code=code or "RECALL", message=message)
    if fields.get("result_code") == "SUCCESS":
        return ReverseResult(ReverseState.DONE)
    if code == "REVERSE_EXPIRE":
        return ReverseResult(ReverseState.EXPIRED, code=code, message=message)
    if code in REVERSE_RETRY_CODES:
        return ReverseResult(ReverseState.RETRY, code=code, message=message)
    if fields.get("result_code") == "FAIL" and code:
        return ReverseResult(ReverseState.FAILED, code=code, message=message)
    return ReverseResult(ReverseState.UNKNOWN, code=code or "NO_RESULT_CODE", message=message)


def classify_refund(fields: Mapping[str, str], out_trade_no: str, out_refund_no: str) -> RefundResult:
    """A verified refund answer: accepted -> PROCESSING (confirm by refund query)."""
    if fields.get("result_code") == "SUCCESS":
        if (
            fields.get("out_refund_no", out_refund_no) != out_refund_no
            or fields.get("out_trade_no", out_trade_no) != out_trade_no
        ):
            return RefundResult(RefundState.UNKNOWN, code="ANSWER_MISMATCH")
        return RefundResult(RefundState.PROCESSING, provider_ref=fields.get("refund_id") or None)
    code = fields.get("err_code") or None
    message = fields.get("err_code_des") or None
    if fields.get("result_code") == "FAIL" and code in REFUND_FAILED_CODES:
        return RefundResult(RefundState.FAILED, code=code, message=message)
    return RefundResult(RefundState.UNKNOWN, code=code or "NO_RESULT_CODE", message=message)


def classify_refund_query(fields: Mapping[str, str], out_trade_no: str, out_refund_no: str) -> RefundResult:
    """A verified refundquery answer: the ``refund_status_$n`` whose ``out_refund_no_$n`` is ours."""
    if fields.get("result_code") != "SUCCESS":
        code = fields.get("err_code") or "NO_RESULT_CODE"
        if code == "REFUNDNOTEXIST":
            return RefundResult(RefundState.NOT_FOUND, code=code)
        return RefundResult(RefundState.UNKNOWN, code=code, message=fields.get("err_code_des") or None)
    if fields.get("out_trade_no", out_trade_no) != out_trade_no:
        # Our refund number answered for another trade: nothing we can rely on.
        return RefundResult(RefundState.UNKNOWN, code="ANSWER_MISMATCH")
    count_text = fields.get("refund_count", "")
    count = int(count_text) if count_text.isdigit() else 0
    for n in range(min(count, 100)):
        if fields.get(f"out_refund_no_{n}") != out_refund_no:
            continue
        raw = fields.get(f"refund_status_{n}", "")
        state = REFUND_STATES.get(raw)
        ref = fields.get(f"refund_id_{n}") or None
        if state is None:
            return RefundResult(RefundState.UNKNOWN, provider_ref=ref, code=raw or "NO_REFUND_STATUS")
        return RefundResult(state, provider_ref=ref, code=None if state is RefundState.SUCCESS else raw)
    return RefundResult(RefundState.NOT_FOUND, code="REFUNDNOTEXIST")
