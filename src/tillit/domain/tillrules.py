"""Rules of the cashier station, pure: manager PIN hashes, the discount limit, 抹零 rounding, spreading an
order-level discount over the lines (the server only knows line discounts) and the quick-cash notes."""

from __future__ import annotations

import hashlib
import hmac

PIN_ITERATIONS = 120_000  # the legacy PBKDF2 form (verified, no longer written)
PIN_MIN, PIN_MAX = 4, 12
# scrypt, memory-hard: 32 MiB and about 0.1 s per guess on this project's machines, so the PIN space
# (10^4..10^12) costs a guesser memory as well as time (docs/till.md, "Manager PINs: threat model").
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
SCRYPT_MAXMEM = 64 * 1024 * 1024
# After MAX_PIN_FAILURES wrong PINs in a row the till refuses every PIN for PIN_LOCK_S seconds, doubling
# with each further five (at most PIN_LOCK_MAX_S); a right PIN resets the count.
MAX_PIN_FAILURES = 5
PIN_LOCK_S = 300
PIN_LOCK_MAX_S = 24 * 3600
ROUNDINGS = ("none", "jiao", "yuan")
NOTES = (1000, 2000, 5000, 10000)  # ¥10, ¥20, ¥50, ¥100 in fen


def valid_pin(pin: str) -> bool:
    return pin.isdigit() and PIN_MIN <= len(pin) <= PIN_MAX


def hash_pin(pin: str, salt: str, n: int = SCRYPT_N, r: int = SCRYPT_R, p: int = SCRYPT_P) -> str:
    """``scrypt$<n>$<r>$<p>$<salt>$<hex digest>``: the only form in which a PIN is stored."""
    digest = hashlib.scrypt(pin.encode(), salt=salt.encode(), n=n, r=r, p=p, maxmem=SCRYPT_MAXMEM, dklen=32)
    return f"scrypt${n}${r}${p}${salt}${digest.hex()}"


def hash_pin_pbkdf2(pin: str, salt: str, iterations: int = PIN_ITERATIONS) -> str:
    """The form PINs were stored in before scrypt (``pbkdf2_sha256$<iterations>$<salt>$<hex>``); such
    hashes still verify until the manager's PIN is set again."""
    digest = hashlib.pbkdf2_hmac("sha256", pin.encode(), salt.encode(), iterations).hex()
    return f"pbkdf2_sha256${iterations}${salt}${digest}"


def verify_pin(pin: str, encoded: str) -> bool:
    parts = encoded.split("$")
    if len(parts) == 6 and parts[0] == "scrypt" and all(x.isdigit() for x in parts[1:4]):
        n, r, p = (int(x) for x in parts[1:4])
        if n < 2 or n & (n - 1) or n * r * 128 * 2 > SCRYPT_MAXMEM or not 1 <= p <= 16:
            return False
        return hmac.compare_digest(hash_pin(pin, parts[4], n, r, p).split("$")[5], parts[5])
    if len(parts) == 4 and parts[0] == "pbkdf2_sha256" and parts[1].isdigit():
        return hmac.compare_digest(hash_pin_pbkdf2(pin, parts[2], int(parts[1])).split("$")[3], parts[3])
    return False


def pin_lock_until(failures: int, last_failure: float) -> float | None:
    """When PIN entry opens again after ``failures`` wrong PINs in a row (the last at ``last_failure``,
    epoch seconds), or None while fewer than MAX_PIN_FAILURES."""
    if failures < MAX_PIN_FAILURES:
        return None
    doubling = failures // MAX_PIN_FAILURES - 1
    lock_s: int = min(PIN_LOCK_MAX_S, PIN_LOCK_S * 2 ** min(doubling, 20))
    return last_failure + lock_s


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


#: The sync protocol's bounds (POST /v1/sync): at most this many journal entries per batch, and a request
#: body of at most this many bytes. The server enforces both (413 / 422); the till cuts its batches to fit.
SYNC_MAX_ENTRIES = 500
SYNC_MAX_BYTES = 1024 * 1024
