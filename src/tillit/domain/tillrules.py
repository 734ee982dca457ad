"""Rules of the cashier station, pure: manager PIN hashes, the discount limit, 抹零 rounding, spreading an
order-level discount over the lines (the server only knows line discounts) and the quick-cash notes."""

from __future__ import annotations

import hashlib
import hmac

PIN_ITERATIONS = 120_000
PIN_MIN, PIN_MAX = 4, 12
ROUNDINGS = ("none", "jiao", "yuan")
NOTES = (1000, 2000, 5000, 10000)  # ¥10, ¥20, ¥50, ¥100 in fen


def valid_pin(pin: str) -> bool:
    return pin.isdigit() and PIN_MIN <= len(pin) <= PIN_MAX


def hash_pin(pin: str, salt: str, iterations: int = PIN_ITERATIONS) -> str:
    """``pbkdf2_sha256$<iterations>$<salt>$<hex digest>``: the only form in which a PIN is stored."""
    digest = hashlib.pbkdf2_hmac("sha256", pin.encode(), salt.encode(), iterations).hex()
    return f"pbkdf2_sha256${iterations}${salt}${digest}"


def verify_pin(pin: str, encoded: str) -> bool:
    try:
        scheme, iterations, salt, digest = encoded.split("$")
    except ValueError:
        return False
    if scheme != "pbkdf2_sha256" or not iterations.isdigit():
        return False
    candidate = hash_pin(pin, salt, int(iterations)).split("$")[3]
    return hmac.compare_digest(candidate, digest)


def over_limit(gross: int, reduction: int, limit_pct: int) -> bool:
    """A discount or price cut of ``reduction`` on ``gross`` needs a manager above ``limit_pct`` percent."""
    return reduction * 100 > gross * limit_pct


def rounding_off(total: int, mode: str) -> int:
    """What 抹零 knocks off ``total`` (fen): the fen (to the jiao) or the jiao and fen (to the yuan)."""
    if mode == "jiao":
        return total % 10
    if mode == "yuan":
        return total % 100
    return 0


def spread(amount: int, capacities: list[int]) -> list[int]:
    """Split ``amount`` over lines in proportion to ``capacities`` (each share at most its capacity), the
    remainder fen going to the largest lines first. Raises ValueError if the lines cannot absorb it."""
    room = sum(capacities)
    if amount < 0 or amount > room:
        raise ValueError("amount exceeds what the lines can absorb")
    if amount == 0 or room == 0:
        return [0] * len(capacities)
    shares = [amount * c // room for c in capacities]
    left = amount - sum(shares)
    for index in sorted(range(len(capacities)), key=lambda i: -capacities[i]):
        if left == 0:
            break
        extra = min(left, capacities[index] - shares[index])
        shares[index] += extra
        left -= extra
    return shares


def quick_cash(due: int) -> list[int]:
    """The exact amount, then the next banknotes up (¥10/20/50/100) that cover ``due``; at most four."""
    if due <= 0:
        return []
    amounts = [due]
    for note in NOTES:
        if note > due and note not in amounts:
            amounts.append(note)
    if len(amounts) == 1 and due % 10000:
        amounts.append((due // 10000 + 1) * 10000)  # above ¥100: the next hundred
    return amounts[:4]
