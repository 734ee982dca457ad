"""Pure rules of the merchants area: identifier check characters, masking, documents, limits.

Check characters follow shared/reference/operations.md §6: the unified social credit code (GB 32100,
mod 31 over a 31-symbol alphabet) and the resident ID number (GB 11643, ISO 7064 MOD 11-2). Limits
(§7) are decided here from numbers the use cases read; the counters live in the database.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from tillit.domain.errors import invalid

# --- GB 32100 unified social credit code ----------------------------------------------------------

USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"  # 31 symbols, no I O Z S V
USCC_WEIGHTS = tuple(pow(3, i, 31) for i in range(17))  # 1 3 9 27 19 26 16 17 20 29 25 13 8 24 10 30 28
_USCC_SHAPE = re.compile(r"^[0-9A-HJ-NPQRTUWXY]{2}[0-9]{6}[0-9A-HJ-NPQRTUWXY]{10}$")


def uscc_check_character(first17: str) -> str:
    """The check character of the first 17 characters of a credit code."""
    total = sum(USCC_ALPHABET.index(ch) * w for ch, w in zip(first17, USCC_WEIGHTS, strict=True))
    return USCC_ALPHABET[(31 - total % 31) % 31]


def validate_credit_code(raw: str) -> str:
    """The normalised (upper-case, trimmed) code; raises ``credit_code_invalid`` naming the reason."""
    code = raw.strip().upper()
    if len(code) != 18:
        raise invalid(
            "credit_code_invalid", "A unified social credit code has 18 characters.", {"reason": "length"}
        )
    if not _USCC_SHAPE.match(code):
        raise invalid(
            "credit_code_invalid",
            "The credit code holds a character outside GB 32100's alphabet (no I, O, Z, S, V).",
            {"reason": "alphabet"},
        )
    expected = uscc_check_character(code[:17])
    if code[17] != expected:
        raise invalid(
            "credit_code_invalid",
            "The credit code's check character does not match (GB 32100): check it for a typo.",
            {"reason": "check_character"},
        )
    return code


def is_individual_business(code: str) -> bool:
    """``92…``: a 个体工商户 licence (market-regulation authority, type 2)."""
    return code.startswith("92")


# --- GB 11643 resident ID number ------------------------------------------------------------------

ID_WEIGHTS = tuple(pow(2, 17 - i, 11) for i in range(17))  # 7 9 10 5 8 4 2 1 6 3 7 9 10 5 8 4 2
ID_CHECK = "10X98765432"
_ID_SHAPE = re.compile(r"^[0-9]{17}[0-9X]$")


def id_check_digit(first17: str) -> str:
    return ID_CHECK[sum(int(d) * w for d, w in zip(first17, ID_WEIGHTS, strict=True)) % 11]


def validate_resident_id(raw: str) -> str:
    """The normalised number (upper-case X); raises ``id_number_invalid``. The message never echoes it."""
    number = raw.strip().upper()
    if not _ID_SHAPE.match(number):
        raise invalid(
            "id_number_invalid",
            "A resident ID number has 17 digits and a check digit or X.",
            {"reason": "shape"},
        )
    try:
        date(int(number[6:10]), int(number[10:12]), int(number[12:14]))
    except ValueError:
        raise invalid(
            "id_number_invalid", "The ID number's birth date is not a date.", {"reason": "birth_date"}
        ) from None
    if number[17] != id_check_digit(number[:17]):
        raise invalid(
            "id_number_invalid",
            "The ID number's check digit does not match (GB 11643): check it for a typo.",
            {"reason": "check_digit"},
        )
    return number


# --- bank accounts, phones, masking ---------------------------------------------------------------

_ACCOUNT_SHAPE = re.compile(r"^[0-9]{8,32}$")
_PHONE_SHAPE = re.compile(r"^\+?[0-9]{6,20}$")


def validate_bank_account(raw: str) -> tuple[str, bool]:
    """(digits, passes Luhn). Luhn is only a warning: company accounts often do not use it (§0 rule 6)."""
    digits = re.sub(r"[\s-]", "", raw)
    if not _ACCOUNT_SHAPE.match(digits):
        raise invalid(
            "bank_account_invalid", "A bank account number has 8 to 32 digits.", {"reason": "shape"}
        )
    return digits, luhn_ok(digits)


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def normalise_phone(raw: str) -> str:
    phone = re.sub(r"[\s-]", "", raw)
    if not _PHONE_SHAPE.match(phone):
        raise invalid("phone_invalid", "A phone number has 6 to 20 digits, optionally a leading +.")
    return phone


def mask(value: str, head: int = 3, tail: int = 4) -> str:
    """``110***********002X``: enough to recognise, never enough to use."""
    if len(value) <= head + tail:
        return "*" * len(value)
    return value[:head] + "*" * (len(value) - head - tail) + value[-tail:]


# --- documents --------------------------------------------------------------------------------------

DOCUMENT_KINDS = (
    "business_licence",
    "legal_rep_id",
    "bank_account",
    "category",
    "store_photo",
    "special_licence",
)
FILE_KINDS = frozenset({"store_photo", "special_licence", "business_licence", "legal_rep_id"})
DOCUMENT_STATUSES = ("pending", "approved", "rejected")
#: Sniffed upload types (magic bytes), the only ones accepted: the providers take JPG/BMP/PNG (§5.1)
#: and licences often come as PDF.
FILE_TYPES = {
    b"\xff\xd8\xff": "image/jpeg",
    b"\x89PNG\r\n\x1a\n": "image/png",
    b"BM": "image/bmp",
    b"%PDF-": "application/pdf",
}
MAX_FILE_BYTES = 5 * 1024 * 1024  # WeChat's image upload limit is 5 MB (media upload)


def sniff_type(head: bytes) -> str | None:
    for magic, content_type in FILE_TYPES.items():
        if head.startswith(magic):
            return content_type
    return None


_MCC = re.compile(r"^[0-9]{4}$")


def validate_mcc(raw: str) -> str:
    code = raw.strip()
    if not _MCC.match(code):
        raise invalid("mcc_invalid", "An MCC is four digits (ISO 18245).")
    return code


# --- review schedule ----------------------------------------------------------------------------------

REVIEW_INTERVAL_MONTHS = 12
EXPIRY_NOTICE_DAYS = 30


def add_months(day: date, months: int) -> date:
    month = day.month - 1 + months
    year, month = day.year + month // 12, month % 12 + 1
    for d in (day.day, 30, 29, 28):
        try:
            return date(year, month, d)
        except ValueError:
            continue
    raise AssertionError("unreachable")


# --- limits ---------------------------------------------------------------------------------------------

LIMIT_METHODS = ("wechat", "alipay")
LIMIT_KINDS = ("single", "daily", "monthly")


@dataclass(frozen=True, slots=True)
class LimitTier:
    """A preset operators can apply: the PBoC barcode-payment daily tiers (operations.md §7.1)."""

    name: str
    daily_max: int  # fen
    description: str


BARCODE_TIERS = (
    LimitTier("B", 500_000, "dynamic code, two factors without certificate: 5 000 yuan a day"),
    LimitTier("C", 100_000, "dynamic code, fewer than two factors: 1 000 yuan a day"),
    LimitTier("D", 50_000, "static code: 500 yuan a day"),
)


def period_keys(now: datetime, tz_name: str) -> tuple[str, str]:
    """("2026-12-03", "2026-12"): the merchant-local day and month ``now`` falls in."""
    local = now.astimezone(zone(tz_name))
    return local.strftime("%Y-%m-%d"), local.strftime("%Y-%m")


def zone(tz_name: str) -> ZoneInfo:
    try:
        return ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise invalid("timezone_invalid", f"Unknown time zone {tz_name!r}.") from None


@dataclass(frozen=True, slots=True)
class LimitBreach:
    """Which limit an amount would pass and how much is still allowed under it (fen, never negative)."""

    scope: str  # "merchant" or "terminal"
    method: str
    kind: str  # single | daily | monthly
    limit: int
    remaining: int


def single_breach(scope: str, method: str, amount: int, single_max: int | None) -> LimitBreach | None:
    if single_max is not None and amount > single_max:
        return LimitBreach(scope, method, "single", single_max, single_max)
    return None
