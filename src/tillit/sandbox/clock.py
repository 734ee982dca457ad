"""The sandbox clock: provider time that real time drives at a speed-up factor and tests can advance.

Every provider timeout in the sandbox (password auto-revoke, payment-code expiry, bill download URL
lifetime, notification retry schedule, bill readiness) reads this clock, never the wall clock, so a
test can move minutes of provider time forward without sleeping.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

#: Providers speak China Standard Time (no DST); all wire timestamps are rendered in it.
CHINA_TZ = timezone(timedelta(hours=8), name="Asia/Shanghai")


class SandboxClock:
    """Sandbox time = ``start + (real elapsed) * speed + advanced``.

    ``speed=0`` gives a clock that only moves when :meth:`advance` is called (the test clock).
    The clock never goes backwards: :meth:`advance` rejects negative steps and
    :meth:`not_before` only ever moves it forward.
    """

    def __init__(
        self,
        start: datetime | None = None,
        speed: float = 1.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if speed < 0:
            raise ValueError("speed must be >= 0")
        if start is None:
            start = datetime.now(UTC)
        if start.tzinfo is None:
            raise ValueError("start must be timezone-aware")
        self._start = start.astimezone(CHINA_TZ)
        self._speed = speed
        self._monotonic = monotonic
        self._real_start = monotonic()
        self._advanced = timedelta()
        self._lock = threading.Lock()

    @property
    def speed(self) -> float:
        """The speed-up factor: sandbox seconds per real second."""
        return self._speed

    def now(self) -> datetime:
        """The current sandbox time, timezone-aware, in China Standard Time."""
        with self._lock:
            elapsed = (self._monotonic() - self._real_start) * self._speed
            return self._start + timedelta(seconds=elapsed) + self._advanced

    def advance(self, seconds: float) -> datetime:
        """Move sandbox time forward by ``seconds`` (>= 0) and return the new time."""
        if seconds < 0:
            raise ValueError("the sandbox clock cannot go backwards")
        with self._lock:
            self._advanced += timedelta(seconds=seconds)
        return self.now()

    def not_before(self, moment: datetime) -> None:
        """Advance the clock to ``moment`` if it is behind it (used after a restart)."""
        gap = (moment - self.now()).total_seconds()
        if gap > 0:
            self.advance(gap)


def to_ms(moment: datetime) -> int:
    """A timezone-aware datetime as integer epoch milliseconds (the storage format)."""
    return int(moment.timestamp() * 1000)


def from_ms(ms: int) -> datetime:
    """Epoch milliseconds back to a China-time datetime."""
    return datetime.fromtimestamp(ms / 1000, tz=CHINA_TZ)
