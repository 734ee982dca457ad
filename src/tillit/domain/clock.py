"""Injectable time: services never call datetime.now() themselves."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Protocol


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


class ManualClock:
    """A clock that only moves when told to; for tests and simulations."""

    def __init__(self, start: datetime | None = None) -> None:
        if start is not None and start.utcoffset() is None:
            raise ValueError("ManualClock start must be timezone-aware")
        self._now = start.astimezone(UTC) if start is not None else datetime(2026, 11, 20, 8, 0, tzinfo=UTC)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> datetime:
        with self._lock:
            self._now += timedelta(seconds=seconds)
            return self._now


class ScaledClock:
    """Real time sped up by ``speed`` from ``start``: provider minutes in test seconds.

    Two processes given the same ``origin`` (a real epoch instant) and ``speed`` agree on the time,
    which is how a sped-up sandbox and a sped-up Tillit share one timeline.
    """

    def __init__(self, speed: float, origin: float, start: datetime | None = None) -> None:
        import time

        self._time = time.time
        self.speed = speed
        self.origin = origin
        # A start carrying an offset (``+08:00``, as ``tillit chaos`` passes the sandbox's time) is converted
        # to UTC here: every Clock returns aware UTC, and a naive start is refused rather than guessed.
        if start is not None and start.utcoffset() is None:
            raise ValueError("ScaledClock start must be timezone-aware")
        self.start = start.astimezone(UTC) if start is not None else datetime.fromtimestamp(origin, UTC)

    def now(self) -> datetime:
        return self.start + timedelta(seconds=(self._time() - self.origin) * self.speed)
