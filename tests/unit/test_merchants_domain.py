"""Pure rules of the merchants area: check characters with published examples, masking, the lifecycle
machine as a property, limit periods in the merchant's time zone."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tillit.domain.errors import DomainError
from tillit.domain.merchants import (
    USCC_ALPHABET,
    add_months,
    id_check_digit,
    luhn_ok,
    mask,
    period_keys,
    sniff_type,
    uscc_check_character,
    validate_bank_account,
    validate_credit_code,
    validate_resident_id,
)
from tillit.domain.messages import MESSAGES, for_failure
from tillit.domain.states import MERCHANT

# Published codes (operations.md §6): a Tencent entity's credit code, a second one ending in G, and
# the ID number widely cited as GB 11643's sample.
REAL_CREDIT_CODES = ["91440300708461136T", "9144030071526726XG"]
REAL_ID_NUMBERS = ["11010519491231002X"]


@pytest.mark.parametrize("code", REAL_CREDIT_CODES)
def test_published_credit_codes_pass(code: str) -> None:
    assert validate_credit_code(code.lower()) == code
    assert uscc_check_character(code[:17]) == code[17]


def test_worked_example_sum() -> None:
    # operations.md §6.1: S = 966, 966 mod 31 = 5, 31 - 5 = 26 -> T
    assert USCC_ALPHABET[26] == "T"
    assert uscc_check_character("91440300708461136") == "T"


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        ("91440300708461136A", "check_character"),  # one wrong check character
        ("91440300708461137T", "check_character"),  # one digit changed
        ("91440300708416136T", "check_character"),  # two digits swapped
        ("9144030070846113T", "length"),
        ("91440300708461136TT", "length"),
        ("9144030070846113OT", "alphabet"),  # O is not in GB 32100's alphabet
        ("91440300708461I36T", "alphabet"),
        ("9A440300708461136T", "check_character"),  # shape ok, sum wrong
    ],
)
def test_bad_credit_codes_are_refused_with_a_reason(code: str, reason: str) -> None:
    with pytest.raises(DomainError) as err:
        validate_credit_code(code)
    assert err.value.code == "credit_code_invalid"
    assert err.value.details == {"reason": reason}


@given(st.text(alphabet=USCC_ALPHABET, min_size=17, max_size=17))
def test_any_computed_check_character_validates_and_any_other_fails(body: str) -> None:
    check = uscc_check_character(body)
    if not body[2:8].isdigit():
        return  # position 3-8 is an area code (digits)
    assert validate_credit_code(body + check) == body + check
    wrong = USCC_ALPHABET[(USCC_ALPHABET.index(check) + 1) % 31]
    with pytest.raises(DomainError):
        validate_credit_code(body + wrong)


@pytest.mark.parametrize("number", REAL_ID_NUMBERS)
def test_published_id_number_passes(number: str) -> None:
    assert validate_resident_id(number.lower()) == number
    assert id_check_digit(number[:17]) == "X"


@pytest.mark.parametrize(
    ("number", "reason"),
    [
        ("110105194912310021", "check_digit"),
        ("11010519491231002", "shape"),
        ("11010519491331002X", "birth_date"),  # month 13
        ("1101051949123100AX", "shape"),
    ],
)
def test_bad_id_numbers_are_refused_without_echoing_them(number: str, reason: str) -> None:
    with pytest.raises(DomainError) as err:
        validate_resident_id(number)
    assert err.value.code == "id_number_invalid"
    assert err.value.details == {"reason": reason}
    assert number not in err.value.message


def test_masking_and_luhn() -> None:
    assert mask("11010519491231002X") == "110***********002X"
    assert mask("6222021234567890123", 4, 4) == "6222***********0123"
    assert luhn_ok("4111111111111111") and not luhn_ok("4111111111111112")
    digits, ok = validate_bank_account("6222 0212 3456 7890")
    assert digits == "6222021234567890" and isinstance(ok, bool)
    with pytest.raises(DomainError):
        validate_bank_account("12ab")


def test_sniffing_by_content() -> None:
    assert sniff_type(b"\xff\xd8\xff\xe0rest") == "image/jpeg"
    assert sniff_type(b"\x89PNG\r\n\x1a\nrest") == "image/png"
    assert sniff_type(b"%PDF-1.7") == "application/pdf"
    assert sniff_type(b"GIF89a") is None
    assert sniff_type(b"MZ\x90\x00") is None  # an executable named photo.jpg


def test_periods_are_merchant_local() -> None:
    # 16:30 UTC on 3 Dec is 00:30 on 4 Dec in Shanghai
    now = datetime(2026, 12, 3, 16, 30, tzinfo=UTC)
    assert period_keys(now, "Asia/Shanghai") == ("2026-12-04", "2026-12")
    assert period_keys(now, "Europe/Berlin") == ("2026-12-03", "2026-12")
    assert add_months(date(2026, 1, 31), 1) == date(2026, 2, 28)
    assert add_months(date(2026, 12, 3), 12) == date(2027, 12, 3)


def test_limit_and_suspension_messages_name_the_next_step() -> None:
    for reason in ("limit_exceeded", "merchant_suspended", "provider_limit"):
        m = MESSAGES[reason]
        assert m.en and m.zh and m.en != m.zh
    assert "split" in MESSAGES["limit_exceeded"].en and "分笔" in MESSAGES["limit_exceeded"].zh
    # the providers' own limit answers are shown as limits, not as a generic decline
    assert for_failure("ACQ.BEYOND_PAY_RESTRICTION").reason == "provider_limit"
    assert for_failure("ACQ.TOTAL_FEE_EXCEED").reason == "provider_limit"


@given(st.lists(st.sampled_from(sorted(MERCHANT.statuses)), max_size=30))
def test_lifecycle_walks_only_declared_moves(targets: list[str]) -> None:
    """Any sequence of requested moves: each is taken iff declared; terminated is final; a return is
    only ever suspended->active or rejected->under_review; active is reachable only through review
    (or creation)."""
    status = "applied"
    seen = [status]
    for target in targets:
        if MERCHANT.can(status, target):
            forward = target in MERCHANT.moves.get(status, frozenset())
            assert forward or (status, target) in {("suspended", "active"), ("rejected", "under_review")}
            status = target
            seen.append(status)
        else:
            with pytest.raises(DomainError):
                MERCHANT.check(status, target)
    if "terminated" in seen:
        assert seen[-1] == "terminated" and seen.count("terminated") == 1
    if "active" in seen:
        assert "under_review" in seen[: seen.index("active")]
