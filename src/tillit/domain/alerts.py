"""Alert rules and alerts, as data: the rule kinds, what their numbers mean, the alert state machine and
the pure judgement of a measurement against a rule (docs/monitoring.md).

Rates are per mille (‰, integers) so that thresholds and stored values stay exact.
"""

from __future__ import annotations

from dataclasses import dataclass

from tillit.domain.states import StateMachine

#: An alert opens ``firing``; a person acknowledges it (seen, being handled); it is resolved by a person
#: or by the evaluator once the condition has cleared. Firing again after resolution opens a new alert.
ALERT = StateMachine(
    name="alert",
    initial=frozenset({"firing"}),
    moves={
        "firing": frozenset({"acknowledged", "resolved"}),
        "acknowledged": frozenset({"resolved"}),
        "resolved": frozenset(),
    },
    terminal=frozenset({"resolved"}),
)
ALERT_OPEN = frozenset({"firing", "acknowledged"})


@dataclass(frozen=True, slots=True)
class RuleKind:
    name: str
    unit: str  # what ``threshold`` and an alert's ``value`` count
    per_provider: bool  # measured per provider (else per merchant)
    description: str


RULE_KINDS: dict[str, RuleKind] = {
    k.name: k
    for k in (
        RuleKind("failure_rate", "permille", True, "failed, reversed or cancelled attempts in the window"),
        RuleKind("unknown_rate", "permille", True, "attempts whose first answer was unknown in the window"),
        RuleKind("provider_errors", "count", True, "attempts the provider answered with an error code"),
        RuleKind(
            "failure_spike",
            "percent_of_baseline",
            True,
            "failure rate in the window against the same hour on the same weekday of the last 4 weeks",
        ),
        RuleKind("open_exceptions", "count", False, "exceptions open longer than window_minutes"),
        RuleKind("recon_differences", "count", False, "open reconciliation differences"),
        RuleKind("not_credited", "count", False, "settlement days not credited (fed by the settlement area)"),
    )
}

#: The spike rule never compares against a baseline below this rate, so a quiet history (0 ‰) does
#: not turn one failure into an alert.
SPIKE_FLOOR_PERMILLE = 20
SPIKE_WEEKS = 4
MAX_WINDOW_MINUTES = 7 * 24 * 60
MAX_THRESHOLD = 1_000_000


@dataclass(frozen=True, slots=True)
class Measurement:
    """What the evaluator measured for one rule and one subject (a provider, or the merchant)."""

    subject: str
    value: int  # in the rule kind's unit
    attempts: int  # how many attempts the value stands on (counts: the count itself)


def rate_permille(part: int, whole: int) -> int:
    return 0 if whole <= 0 else (part * 1000 + whole // 2) // whole


def spike_percent(current_permille: int, baseline_permilles: list[int]) -> int:
    """The current rate as a percentage of the weekly baseline (its mean, floored at SPIKE_FLOOR)."""
    baseline = sum(baseline_permilles) // len(baseline_permilles) if baseline_permilles else 0
    return current_permille * 100 // max(baseline, SPIKE_FLOOR_PERMILLE)


def breaches(kind: str, threshold: int, min_attempts: int, m: Measurement) -> bool:
    """Whether ``m`` breaks a rule of ``kind``: rates need ``min_attempts`` attempts behind them, and a
    value at or above the threshold breaks it (a threshold of 0 on a count means "any")."""
    unit = RULE_KINDS[kind].unit
    if unit in ("permille", "percent_of_baseline") and m.attempts < max(min_attempts, 1):
        return False
    if unit == "count" and m.value == 0:
        return False
    return m.value >= threshold


def dedup_key(rule_id: str, subject: str) -> str:
    """One open alert per rule and subject: the evaluator updates it instead of opening another."""
    return f"{rule_id}:{subject}"[:120]
