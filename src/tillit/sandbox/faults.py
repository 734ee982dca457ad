"""Seeded, reproducible fault injection.

The app owns one ``random.Random(seed)`` for faults (never the global RNG, never the id RNG), and
every decision draws a fixed number of values in a fixed order, so the same seed and the same
sequence of requests give the same faults.
"""

from __future__ import annotations

import json
import random
import threading
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

ENDPOINT_FAULTS = ("latency", "hang", "answer_lost", "system_error", "bad_signature")
NOTIFY_FAULTS = ("loss", "duplicate", "delay", "reorder")

#: The state file's meta key under which the last ``PUT /sandbox/faults`` is kept across restarts.
FAULTS_META = "fault_profile"

#: Every endpoint name a fault profile may target ("*" matches all of them).
ENDPOINTS = (
    "wechat.micropay",
    "wechat.orderquery",
    "wechat.reverse",
    "wechat.closeorder",
    "wechat.refund",
    "wechat.refundquery",
    "wechat.downloadbill",
    "alipay.trade.pay",
    "alipay.trade.query",
    "alipay.trade.cancel",
    "alipay.trade.close",
    "alipay.trade.refund",
    "alipay.trade.fastpay.refund.query",
    "alipay.data.dataservice.bill.downloadurl.query",
    "alipay.bill.file",
)


class FaultProfileError(ValueError):
    """A fault profile that does not validate."""


def _probability(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise FaultProfileError(f"{where} must be a probability between 0 and 1")
    return float(value)


@dataclass(frozen=True)
class EndpointFaults:
    """Probabilities for one endpoint, each drawn independently per request."""

    latency: float = 0.0  # add latency_ms (real time) before answering
    hang: float = 0.0  # sleep hang_seconds (real time), past the client's timeout, then process
    answer_lost: float = 0.0  # commit, then answer 5xx: money moved, the client cannot know
    system_error: float = 0.0  # answer SYSTEMERROR / 20000 without doing anything
    bad_signature: float = 0.0  # process normally, sign the answer wrongly


@dataclass(frozen=True)
class NotifyFaults:
    """Probabilities for each notification delivery attempt."""

    loss: float = 0.0  # the attempt vanishes (the retry schedule continues)
    duplicate: float = 0.0  # delivered twice
    delay: float = 0.0  # postponed by delay_seconds of sandbox time
    reorder: float = 0.0  # the due batch is shuffled


@dataclass(frozen=True)
class FaultProfile:
    """The whole fault profile, as set through ``PUT /sandbox/faults``."""

    endpoints: dict[str, EndpointFaults] = field(default_factory=dict)
    notify: NotifyFaults = NotifyFaults()
    late_bill: float = 0.0  # a bill that should be ready answers "not ready"
    latency_ms: int = 300
    hang_seconds: float = 30.0
    answer_lost_status: int = 502
    delay_seconds: int = 600

    def for_endpoint(self, endpoint: str) -> EndpointFaults:
        """The faults for ``endpoint``: its own entry, else the ``"*"`` entry, else none."""
        return self.endpoints.get(endpoint) or self.endpoints.get("*") or EndpointFaults()

    def to_json(self) -> dict[str, Any]:
        """JSON view (the shape ``from_json`` accepts)."""
        data = asdict(self)
        return data

    @classmethod
    def from_json(cls, data: Any) -> FaultProfile:
        """Validate a JSON profile; raise :class:`FaultProfileError` with a precise message."""
        if not isinstance(data, dict):
            raise FaultProfileError("the profile must be a JSON object")
        allowed = {
            "endpoints",
            "notify",
            "late_bill",
            "latency_ms",
            "hang_seconds",
            "answer_lost_status",
            "delay_seconds",
            "seed",
        }
        unknown = set(data) - allowed
        if unknown:
            raise FaultProfileError(f"unknown fields {sorted(unknown)}")
        endpoints: dict[str, EndpointFaults] = {}
        raw_endpoints = data.get("endpoints", {})
        if not isinstance(raw_endpoints, dict):
            raise FaultProfileError("endpoints must be an object")
        for name, spec in raw_endpoints.items():
            if name != "*" and name not in ENDPOINTS:
                raise FaultProfileError(f"unknown endpoint {name!r}; known: {', '.join(ENDPOINTS)}")
            if not isinstance(spec, dict) or set(spec) - set(ENDPOINT_FAULTS):
                raise FaultProfileError(f"endpoints.{name} takes only {', '.join(ENDPOINT_FAULTS)}")
            endpoints[name] = EndpointFaults(
                **{k: _probability(v, f"endpoints.{name}.{k}") for k, v in spec.items()}
            )
        raw_notify = data.get("notify", {})
        if not isinstance(raw_notify, dict) or set(raw_notify) - set(NOTIFY_FAULTS):
            raise FaultProfileError(f"notify takes only {', '.join(NOTIFY_FAULTS)}")
        notify = NotifyFaults(**{k: _probability(v, f"notify.{k}") for k, v in raw_notify.items()})
        late_bill = _probability(data.get("late_bill", 0.0), "late_bill")
        latency_ms = data.get("latency_ms", 300)
        hang_seconds = data.get("hang_seconds", 30.0)
        status = data.get("answer_lost_status", 502)
        delay = data.get("delay_seconds", 600)
        if not isinstance(latency_ms, int) or not 0 <= latency_ms <= 60_000:
            raise FaultProfileError("latency_ms must be an integer between 0 and 60000")
        if (
            isinstance(hang_seconds, bool)
            or not isinstance(hang_seconds, int | float)
            or not 0 <= hang_seconds <= 600
        ):
            raise FaultProfileError("hang_seconds must be between 0 and 600")
        if status not in (500, 502, 503, 504):
            raise FaultProfileError("answer_lost_status must be 500, 502, 503 or 504")
        if not isinstance(delay, int) or not 0 <= delay <= 86400:
            raise FaultProfileError("delay_seconds must be an integer between 0 and 86400")
        return cls(endpoints, notify, late_bill, latency_ms, float(hang_seconds), status, delay)


@dataclass(frozen=True)
class Decision:
    """The faults chosen for one request."""

    endpoint: str
    latency: bool = False
    hang: bool = False
    answer_lost: bool = False
    system_error: bool = False
    bad_signature: bool = False

    def names(self) -> list[str]:
        """The names of the faults that fire."""
        return [name for name in ENDPOINT_FAULTS if getattr(self, name)]


class FaultInjector:
    """Draws fault decisions from its own seeded RNG and keeps a log of what fired."""

    LOG_LIMIT = 10_000

    def __init__(self, seed: int, profile: FaultProfile | None = None) -> None:
        self._lock = threading.Lock()
        self.seed = seed
        self._rng = random.Random(seed)
        self.profile = profile or FaultProfile()
        self.log: list[dict[str, Any]] = []
        self._count = 0
        # Every decision counted, fired or not (the log keeps only the last LOG_LIMIT that fired).
        self.decisions: Counter[str] = Counter()
        self.faulted: Counter[str] = Counter()
        self.fired: Counter[str] = Counter()

    def set_profile(self, profile: FaultProfile, seed: int | None = None) -> None:
        """Replace the profile; with ``seed``, restart the fault sequence from it."""
        with self._lock:
            self.profile = profile
            if seed is not None:
                self.seed = seed
                self._rng = random.Random(seed)
                self.log.clear()
                self._count = 0
                self.decisions.clear()
                self.faulted.clear()
                self.fired.clear()

    def _record(self, kind: str, target: str, fired: list[str]) -> None:
        self._count += 1
        # Notifications are keyed by their id; count them as one target so the counters stay small.
        counted = target if kind in ("endpoint", "bill") else "all"
        self.decisions[f"{kind}:{counted}"] += 1
        if any(name != "latency" for name in fired):  # a slow answer is still an answer
            self.faulted[f"{kind}:{counted}"] += 1
        if fired:
            for name in fired:
                self.fired[f"{counted if kind == 'endpoint' else kind}:{name}"] += 1
            self.log.append({"n": self._count, "kind": kind, "target": target, "faults": fired})
            del self.log[: -self.LOG_LIMIT]

    def decide(self, endpoint: str) -> Decision:
        """Decide the faults for one request to ``endpoint`` (always five draws)."""
        with self._lock:
            spec = self.profile.for_endpoint(endpoint)
            draws = [self._rng.random() for _ in ENDPOINT_FAULTS]
            fired = {name: draws[i] < getattr(spec, name) for i, name in enumerate(ENDPOINT_FAULTS)}
            decision = Decision(endpoint, **fired)
            self._record("endpoint", endpoint, decision.names())
            return decision

    def decide_notify(self, notify_id: str) -> list[str]:
        """Faults for one notification delivery attempt (always four draws)."""
        with self._lock:
            spec = self.profile.notify
            draws = [self._rng.random() for _ in NOTIFY_FAULTS]
            fired = [name for i, name in enumerate(NOTIFY_FAULTS) if draws[i] < getattr(spec, name)]
            self._record("notify", notify_id, fired)
            return fired

    def shuffle(self, items: list[Any]) -> None:
        """Shuffle a batch in place with the fault RNG (notification reordering)."""
        with self._lock:
            self._rng.shuffle(items)

    def late_bill(self, target: str) -> bool:
        """Whether a ready bill answers "not ready" this time (one draw)."""
        with self._lock:
            fired = self._rng.random() < self.profile.late_bill
            self._record("bill", target, ["late_bill"] if fired else [])
            return fired


    def stats(self) -> dict[str, dict[str, int]]:
        """Counts of every decision since this injector started: made, with a fault, per fault fired."""
        with self._lock:
            return {
                "decisions": dict(self.decisions),
                "faulted": dict(self.faulted),
                "fired": dict(self.fired),
            }


def restored(saved: str | None, seed: int) -> FaultInjector:
    """The injector a starting sandbox runs with: the profile and seed last set through the control API
    (kept in the state file), else no faults and ``seed``. A restored sequence starts again from its seed."""
    if saved is None:
        return FaultInjector(seed)
    data = json.loads(saved)
    return FaultInjector(int(data["seed"]), FaultProfile.from_json(data["profile"]))
