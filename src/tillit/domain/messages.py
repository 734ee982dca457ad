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
