"""Fee arithmetic, pure (shared/reference/operations.md §3).

Rates are parts per million (0.38 % = 3800 ppm); money is integer fen. Every fee is computed per
transaction and rounded half-up to the fen, never summed then rounded (§0 rule 3, §3.2). A refund
returns the fee proportionally: returned fee = refunded amount x rate, rounded half-up on its own
(§3.3, WeChat official; Alipay modelled the same way and checked against the bill), so the returned
fees of several partial refunds can differ by a fen from the original fee; the return is capped so it
never exceeds the fee still kept for the payment. A cap (UnionPay debit cards: 13 yuan issuer fee, §3.4,
or a contract's own) bounds the fee of one payment.

The bill states fees in 0.00001 yuan (``e5``): ``fen_to_e5`` / ``e5_to_fen`` convert.
"""

from __future__ import annotations

from dataclasses import dataclass

PPM = 1_000_000
MAX_RATE_PPM = 100_000  # 10 %: anything above is a typing error, not a contract
CARD_KINDS = ("any", "balance", "debit", "credit")
E5_PER_FEN = 1000


def _half_up(numerator: int, denominator: int) -> int:
    """numerator / denominator rounded half-up, for non-negative integers (exact, no floats)."""
    assert numerator >= 0 and denominator > 0
    return (2 * numerator + denominator) // (2 * denominator)


def fee_fen(amount: int, rate_ppm: int, cap: int | None = None) -> int:
    """The fee of one payment of ``amount`` fen at ``rate_ppm``: half-up to the fen, at most ``cap``.

    1 fen at 0.6 % is 0.006 fen -> 0; 100 fen at 0.6 % -> 0.6 -> 1 fen (§3.2's examples)."""
    if amount < 0 or rate_ppm < 0:
        raise ValueError("amount and rate must be non-negative")
    fee = _half_up(amount * rate_ppm, PPM)
    return min(fee, cap) if cap is not None else fee


def refund_fee_return(
    refund_amount: int, rate_ppm: int, *, original_fee: int, returned_so_far: int = 0
) -> int:
    """The fee given back for a refund of ``refund_amount`` fen: proportional, half-up, and never more
    than what the payment's fee still holds (``original_fee - returned_so_far``)."""
    if refund_amount < 0 or returned_so_far < 0 or original_fee < 0:
        raise ValueError("amounts must be non-negative")
    left = max(original_fee - returned_so_far, 0)
    return min(_half_up(refund_amount * rate_ppm, PPM), left)


#: Alipay ``fund_bill_list`` channels that say how the buyer paid (the rest are discounts and coupons:
#: ``COUPON``, ``DISCOUNT``, ``MCOUPON``, ``MDISCOUNT``, ``POINT`` ... are not a card). ``BANKCARD``
#: names its kind in ``fund_type`` (``DEBIT_CARD`` / ``CREDIT_CARD``; ``MIXED_CARD`` is unknown).
#: ``PCREDIT`` (花呗) as a credit product is [unconfirmed] in shared/reference.
ALIPAY_CHANNEL_KINDS = {
    "ALIPAYACCOUNT": "balance",  # 支付宝余额
    "FINANCEACCOUNT": "balance",  # 余额宝
    "PCREDIT": "credit",  # 花呗
    "CREDITCARD": "credit",
    "DEBITCARD": "debit",
}
ALIPAY_CARD_FUND_TYPES = {"DEBIT_CARD": "debit", "CREDIT_CARD": "credit"}


def wechat_card_kind(bank_type: str | None) -> str | None:
    """The card kind a WeChat ``bank_type`` names: ``*_DEBIT`` / ``*_CREDIT`` (``CMB_DEBIT``,
    ``ICBC_CREDIT``), ``CFT`` / ``LQT`` (零钱 / 零钱通) the balance; anything else (``OTHERS``) is
    unknown (None: the ``any`` contract applies). The same rule as the trade bill's ``付款银行``
    (reconciliation/formats/wechat.py); the suffix convention is [unconfirmed] in shared/reference."""
    code = (bank_type or "").strip().upper()
    if code.endswith("_DEBIT"):
        return "debit"
    if code.endswith("_CREDIT"):
        return "credit"
    if code in ("CFT", "LQT"):
        return "balance"
    return None


def alipay_card_kind(fund_bills: object) -> str | None:
    """The card kind of an Alipay ``fund_bill_list`` (pay / query answer: ``fund_channel``; async
    notification: ``fundChannel``): the kind of the channels that are a means of payment, when they
    all agree; None when none is, or they differ (a split payment: the ``any`` contract applies)."""
    if not isinstance(fund_bills, list):
        return None
    kinds: set[str | None] = set()
    for bill in fund_bills:
        if not isinstance(bill, dict):
            continue
        channel = str(bill.get("fund_channel") or bill.get("fundChannel") or "").strip().upper()
        if channel == "BANKCARD":
            fund_type = str(bill.get("fund_type") or bill.get("fundType") or "").strip().upper()
            kinds.add(ALIPAY_CARD_FUND_TYPES.get(fund_type))
        elif channel in ALIPAY_CHANNEL_KINDS:
            kinds.add(ALIPAY_CHANNEL_KINDS[channel])
    return kinds.pop() if len(kinds) == 1 else None


def fen_to_e5(fen: int) -> int:
    return fen * E5_PER_FEN


def e5_to_fen(e5: int) -> int:
    """A bill fee in 0.00001 yuan to fen, half-up away from zero (the bill prints 0.15196 -> 0.15)."""
    sign = -1 if e5 < 0 else 1
    return sign * _half_up(abs(e5), E5_PER_FEN)


def fee_matches(billed_e5: int, amount: int, rate_ppm: int, cap: int | None, unit_e5: int = 1) -> bool:
    """Whether a bill's fee agrees with the contract: equal to the exact product (the bill's own
    precision, half a unit either way) or to the fen-rounded fee."""
    # The exact fee in e5 is amount * rate_ppm / 1000; compare it times 1000 to stay in integers.
    exact_times_1000 = amount * rate_ppm
    if cap is not None:
        exact_times_1000 = min(exact_times_1000, fen_to_e5(cap) * 1000)
    if 2 * abs(billed_e5 * 1000 - exact_times_1000) <= unit_e5 * 1000:
        return True
    return billed_e5 == fen_to_e5(fee_fen(amount, rate_ppm, cap))


def mcc_from_unionpay_merchant_no(merchant_no: str | None) -> str | None:
    """The MCC inside a 15-digit UnionPay merchant number: acquirer (3) + area (4) + MCC (4) + sequence
    (4), so positions 8-11 (§4.1). None when the number is not of that shape."""
    if merchant_no is None or len(merchant_no) != 15 or not merchant_no.isdigit():
        return None
    return merchant_no[7:11]


@dataclass(frozen=True, slots=True)
class Identity:
    """Who a bill row says was paid, or who the contract says should be: any part may be unknown."""

    rate_ppm: int | None = None
    merchant_no: str | None = None
    merchant_name: str | None = None
    mcc: str | None = None
    #: the provider's sub-merchant (WeChat 特约商户号 / Alipay smid): the one 进件 issued to this merchant
    sub_merchant: str | None = None


@dataclass(frozen=True, slots=True)
class IdentityDifference:
    field: str  # rate_ppm, merchant_no, merchant_name, mcc, sub_merchant
    contracted: str
    billed: str


def code_jump_evidence(contract: Identity, billed: Identity) -> list[IdentityDifference]:
    """跳码 evidence (§4.2): every field both sides know that differs. A bill that does not state a
    field is no evidence either way; a contract that does not register one checks nothing there.
    Names are compared after trimming surrounding blanks (exporters pad text cells)."""
    found: list[IdentityDifference] = []
    pairs: list[tuple[str, object, object]] = [
        ("rate_ppm", contract.rate_ppm, billed.rate_ppm),
        ("merchant_no", contract.merchant_no, billed.merchant_no),
        ("merchant_name", _name(contract.merchant_name), _name(billed.merchant_name)),
        ("mcc", contract.mcc, billed.mcc),
        ("sub_merchant", contract.sub_merchant, billed.sub_merchant),
    ]
    for name, ours, theirs in pairs:
        if ours is not None and theirs is not None and ours != theirs:
            found.append(IdentityDifference(name, str(ours), str(theirs)))
    return found


def _name(value: str | None) -> str | None:
    return (value or "").strip() or None


def rate_text(rate_ppm: int) -> str:
    """3800 -> '0.38%' (the bill's own notation)."""
    whole, frac = divmod(rate_ppm, 10_000)
    return f"{whole}.{frac:04d}".rstrip("0").rstrip(".") + "%" if frac else f"{whole}%"
