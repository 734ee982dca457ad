"""Failed sign-ins per client address: after ``max_failures`` within ``window_s`` seconds the sign-in
form answers 429 until the oldest failure leaves the window. In memory, per process, bounded.

API keys are 32 random bytes, so this is not what keeps them safe; it keeps a noisy client from
filling the logs and the database with attempts."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable

MAX_FAILURES = 10
WINDOW_S = 60.0
MAX_CLIENTS = 10_000


class SignInThrottle:
    def __init__(
        self,
        max_failures: int = MAX_FAILURES,
        window_s: float = WINDOW_S,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.window_s = window_s
        self._monotonic = monotonic
        self._failures: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def _recent(self, client: str, now: float) -> deque[float]:
        times = self._failures.setdefault(client, deque())
        while times and times[0] <= now - self.window_s:
            times.popleft()
        return times

    def blocked(self, client: str) -> bool:
        with self._lock:
            return len(self._recent(client, self._monotonic())) >= self.max_failures

    def failed(self, client: str) -> None:
        now = self._monotonic()
        with self._lock:
            self._recent(client, now).append(now)
            self._failures.move_to_end(client)
            while len(self._failures) > MAX_CLIENTS:
                self._failures.popitem(last=False)
