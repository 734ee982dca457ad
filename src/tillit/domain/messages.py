"""Short cashier messages, in zh-CN and en, each naming the next step. Keyed by a stable reason."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class CashierMessage:
    reason: str
    en: str
    zh: str

    def as_dict(self) -> dict[str, str]:
        return {"reason": self.reason, "en": self.en, "zh-CN": self.zh}


_MESSAGES = [
    CashierMessage("paid", "Paid.", "支付成功。"),
    CashierMessage(
        "checking",
        "Checking the payment with the provider — do not charge again.",
        "正在向支付机构确认结果，请勿重复收款。",
    ),
    CashierMessage(
        "customer_confirming",
        "Waiting for the customer to enter the payment password — do not charge again.",
        "等待顾客输入支付密码，请勿重复收款。",
    ),
    CashierMessage(
        "reversing",
        "The payment is being cancelled with the provider; any money taken will be returned."
        " Do not charge again yet.",
        "正在撤销该笔支付，已扣款项将原路退回。请稍候，勿重复收款。",
    ),
    CashierMessage(
        "insufficient_balance",
        "The customer's balance is not enough — ask for another payment method.",
        "顾客余额不足，请让顾客更换支付方式。",
    ),
    CashierMessage(
        "code_expired",
        "The payment code has expired — ask the customer to refresh the code and scan again.",
        "付款码已过期，请让顾客刷新付款码后重新扫码。",
    ),
    CashierMessage(
        "code_invalid",
        "The payment code is not valid or was already used — ask the customer to refresh it.",
        "付款码无效或已使用，请让顾客刷新付款码。",
    ),
    CashierMessage(
        "customer_cancelled",
        "The customer cancelled the payment — confirm with the customer before trying again.",
        "顾客已取消支付，请与顾客确认后再重新收款。",
    ),
    CashierMessage(
        "payment_closed",
        "The payment was closed without taking money — take payment again.",
        "该笔支付已关闭，未扣款，请重新收款。",
    ),
    CashierMessage(
        "unsupported_code",
        "This code belongs to no supported provider — ask for a WeChat or Alipay payment code, or take cash.",
        "无法识别该付款码，请使用微信或支付宝付款码，或收取现金。",
    ),
    CashierMessage(
        "provider_unavailable",
        "The payment provider cannot be reached — take cash or try again shortly.",
        "暂时无法连接支付机构，请收取现金或稍后重试。",
    ),
    CashierMessage(
        "declined",
        "The provider declined the payment — ask for another payment method.",
        "支付被拒绝，请让顾客更换支付方式。",
    ),
    CashierMessage(
        "needs_attention",
        "The outcome needs a manager's check — do not charge again; see Exceptions.",
        "支付结果需要店长核查，请勿重复收款，详见异常列表。",
    ),
]
# --- merchants area (issue 12): the merchant's own standing and limits ------------------------------
_MESSAGES += [
    CashierMessage(
        "merchant_suspended",
        "This shop cannot take WeChat or Alipay payments at the moment (account suspended) — take cash if "
        "allowed, and ask the manager to contact the payment operator.",
        "本店暂停微信/支付宝收款（商户已暂停）。如允许请收取现金，并请店长联系支付服务商。",
    ),
    CashierMessage(
        "merchant_not_active",
        "This shop is not yet approved to take WeChat or Alipay payments — take cash and ask the manager.",
        "本店尚未开通微信/支付宝收款，请收取现金并联系店长。",
    ),
    CashierMessage(
        "cash_not_allowed",
        "This shop's account is suspended and cash sales are switched off too — ask the manager.",
        "商户已暂停，现金收款也已关闭，请联系店长。",
    ),
    CashierMessage(
        "limit_exceeded",
        "This payment is over the shop's limit — use another payment method, split the amount, or ask the "
        "manager to raise the limit.",
        "本笔金额超出本店收款限额，请更换支付方式、分笔支付，或请店长调整限额。",
    ),
    CashierMessage(
        "provider_limit",
        "The provider refused the payment because a limit was reached — ask for another payment method or "
        "a smaller amount; the manager may ask the provider to raise the limit.",
        "支付机构提示已达限额，请更换支付方式或减少金额；如需提额请店长联系支付机构。",
    ),
]
_MESSAGES.append(
    CashierMessage(
        "merchant_account",
        "The provider refused the payment: the shop's payment account there is not active — take "
        "another payment method and ask the manager to check the shop's onboarding with the provider.",
        "支付机构拒绝了本笔支付：本店在该机构的收款商户号未开通或已冻结，请更换支付方式，并请店长核查进件状态。",
    )
)
MESSAGES: dict[str, CashierMessage] = {m.reason: m for m in _MESSAGES}

# Provider failure codes -> message reasons. Anything unlisted is "declined".
FAILURE_REASONS: dict[str, str] = {
    "NOTENOUGH": "insufficient_balance",
    "ACQ.BUYER_BALANCE_NOT_ENOUGH": "insufficient_balance",
    "ACQ.BUYER_BANKCARD_BALANCE_NOT_ENOUGH": "insufficient_balance",
    "AUTHCODEEXPIRE": "code_expired",
    "ACQ.PAYMENT_AUTH_CODE_EXPIRED": "code_expired",
    "AUTH_CODE_INVALID": "code_invalid",
    "AUTH_CODE_ERROR": "code_invalid",
    "ACQ.PAYMENT_AUTH_CODE_INVALID": "code_invalid",
    "PAYERROR": "customer_cancelled",
    "USER_CANCELLED": "customer_cancelled",
    "TRADE_CLOSED": "payment_closed",
    "TIMEOUT": "payment_closed",
    "LINK_DOWN": "provider_unavailable",
    "REVERSED": "payment_closed",
    "CLOSED": "payment_closed",
    "REVOKED": "payment_closed",
    "ORDERREVERSED": "payment_closed",
    "ORDERCLOSED": "payment_closed",
    # merchants area: the providers' own limit answers (operations.md §7.2), definite failures
    "ACQ.TOTAL_FEE_EXCEED": "provider_limit",
    "ACQ.BUYER_PAYMENT_AMOUNT_DAY_LIMIT_ERROR": "provider_limit",
    "ACQ.BUYER_PAYMENT_AMOUNT_MONTH_LIMIT_ERROR": "provider_limit",
    "ACQ.BEYOND_PAY_RESTRICTION": "provider_limit",
    "ACQ.BEYOND_PER_RECEIPT_RESTRICTION": "provider_limit",
    "ACQ.BEYOND_PER_RECEIPT_DAY_RESTRICTION": "provider_limit",
    "ACQ.BEYOND_PER_RECEIPT_SINGLE_RESTRICTION": "provider_limit",
    # the sub-merchant (进件 result) the payment names is unknown, not active or frozen at the provider
    "NOAUTH": "merchant_account",
    "ACQ.SECONDARY_MERCHANT_ID_INVALID": "merchant_account",
    "ACQ.SECONDARY_MERCHANT_ID_BLANK": "merchant_account",
    "ACQ.SECONDARY_MERCHANT_STATUS_ERROR": "merchant_account",
    "ACQ.SELLER_BEEN_BLOCKED": "merchant_account",
}


def for_failure(code: str | None) -> CashierMessage:
    return MESSAGES[FAILURE_REASONS.get(code or "", "declined")]


def for_payment(status: str, failure_code: str | None, user_paying: bool = False) -> CashierMessage | None:
    """The message a cashier sees for a payment in ``status``; None for cash and settled refunds."""
    if status == "captured":
        return MESSAGES["paid"]
    if status in ("pending", "unknown"):
        return MESSAGES["customer_confirming" if user_paying else "checking"]
    if status == "reversing":
        return MESSAGES["reversing"]
    if status in ("failed", "reversed"):
        return for_failure(failure_code)
    return None
