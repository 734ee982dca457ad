"""Money helpers: integer fen internally, yuan strings on the wire and in bills. No floats."""

from __future__ import annotations

import re

_YUAN_RE = re.compile(r"^(0|[1-9]\d{0,10})(?:\.(\d{1,2}))?$")
_RATE_RE = re.compile(r"^(\d{1,2})(?:\.(\d{1,4}))?%$")


def parse_yuan(text: str) -> int:
    """Parse an Alipay amount ("12.5", "12.50", "12") into fen; raise ValueError if malformed.

    At most two decimals, no sign, no exponent: exactly what the gateway accepts.
    """
    match = _YUAN_RE.match(text.strip())
    if not match:
        raise ValueError(f"not a yuan amount: {text!r}")
    whole, frac = match.group(1), (match.group(2) or "")
    return int(whole) * 100 + int(frac.ljust(2, "0"))


def yuan(fen: int) -> str:
    """Fen as a yuan string with two decimals ("-12.50" for negatives)."""
    sign = "-" if fen < 0 else ""
    fen = abs(fen)
    return f"{sign}{fen // 100}.{fen % 100:02d}"


def parse_rate(text: str) -> int:
    """Parse a fee rate such as "0.38%" into parts per million (3800)."""
    match = _RATE_RE.match(text.strip())
    if not match:
        raise ValueError(f"not a fee rate like '0.38%': {text!r}")
    whole, frac = int(match.group(1)), (match.group(2) or "")
    # percent -> ppm: 1 % = 10_000 ppm; four decimals of a percent are exactly 1 ppm.
    return whole * 10_000 + int(frac.ljust(4, "0"))


def format_rate(ppm: int) -> str:
    """Parts per million as the bills print it: 3800 -> "0.38%", 6000 -> "0.60%"."""
    whole, frac = divmod(ppm, 10_000)
    digits = f"{frac:04d}".rstrip("0").ljust(2, "0")
    return f"{whole}.{digits}%"


def _round_div(numerator: int, denominator: int) -> int:
    """Integer division rounding half away from zero."""
    quotient, remainder = divmod(abs(numerator), denominator)
    if remainder * 2 >= denominator:
        quotient += 1
    return quotient if numerator >= 0 else -quotient


def fee_e5(amount_fen: int, rate_ppm: int) -> int:
    """WeChat's fee in units of 0.00001 yuan (bills print five decimals), rounded half up."""
    # fen * ppm / 1e6 yuan-cents -> in 1e-5 yuan: fen/100 * ppm/1e6 * 1e5 = fen * ppm / 1000
    return _round_div(amount_fen * rate_ppm, 1000)


def fee_fen(amount_fen: int, rate_ppm: int) -> int:
    """Alipay's service fee in fen, rounded half up."""
    return _round_div(amount_fen * rate_ppm, 1_000_000)


def format_e5(value: int) -> str:
    """A 1e-5 yuan amount with five decimals ("0.15196", "-0.07596")."""
    sign = "-" if value < 0 else ""
    value = abs(value)
    return f"{sign}{value // 100_000}.{value % 100_000:05d}"
