"""Identifiers: UUIDv7 (time-ordered) as 32 lowercase hex characters.

32 hex characters fit WeChat's and Alipay's ``out_trade_no`` (<= 32 chars), so a payment attempt id
can be the provider reference unchanged. Clients may send ids in the canonical dashed form; they are
normalised here.
"""

from __future__ import annotations

import random
import re
import threading
import uuid

from tillit.domain.clock import Clock
from tillit.domain.errors import invalid


class IdGenerator:
    """Makes UUIDv7 ids from an injected clock and random source (monotonic within a process)."""

    def __init__(self, clock: Clock, rng: random.Random | None = None) -> None:
        self._clock = clock
        self._rng = rng or random.SystemRandom()
        self._lock = threading.Lock()
        self._last_ms = -1
        self._seq = 0

    def new(self) -> str:
        with self._lock:
            ms = int(self._clock.now().timestamp() * 1000)
            if ms <= self._last_ms:
                # Same (or earlier) millisecond: keep ordering by bumping a 12-bit sequence.
                ms = self._last_ms
                self._seq += 1
                if self._seq > 0xFFF:
                    ms += 1
                    self._seq = 0
            else:
                self._seq = self._rng.getrandbits(8)
            self._last_ms = ms
            rand_b = self._rng.getrandbits(62)
            value = (ms & ((1 << 48) - 1)) << 80
            value |= 0x7 << 76
            value |= self._seq << 64
            value |= 0b10 << 62
            value |= rand_b
            return f"{value:032x}"


_STORED_FORM = re.compile(r"[0-9a-f]{32}")


def normalise_id(raw: str, field: str = "id") -> str:
    """Accept a UUID in any standard textual form and return 32 lowercase hex characters."""
    # The stored form itself (what Tillit and its tills send) is returned as it is, without parsing.
    if isinstance(raw, str) and _STORED_FORM.fullmatch(raw):
        return raw
    try:
        return uuid.UUID(raw).hex
    except (ValueError, AttributeError, TypeError):
        raise invalid(
            "invalid_id", f"{field} must be a UUID.", {"field": field, "value": str(raw)[:64]}
        ) from None
