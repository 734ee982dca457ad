"""Every state machine in Tillit, declared once as data.

A machine lists its statuses, the allowed moves and the terminal statuses. ``StateMachine.check`` is
the only judge of a move; the services' ``transition`` function is the only code that applies one,
and it appends an event in the same transaction. A status never moves backwards: the allowed moves
form a DAG (checked by ``StateMachine.__post_init__``), so regression is impossible by construction.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tillit.domain.errors import conflict


@dataclass(frozen=True)
class StateMachine:
    name: str
    initial: frozenset[str]
    moves: dict[str, frozenset[str]]
    terminal: frozenset[str]
    #: Declared returns to an earlier status (a suspended merchant resumed). Kept apart from ``moves``
    #: so the forward graph stays a DAG: every return is named here, none happens by accident.
    returns: dict[str, frozenset[str]] = field(default_factory=dict)
    statuses: frozenset[str] = field(init=False)

    def __post_init__(self) -> None:
        statuses = set(self.moves)
        for targets in self.moves.values():
            statuses |= targets
        object.__setattr__(self, "statuses", frozenset(statuses))
        assert self.initial <= self.statuses, f"{self.name}: initial statuses must be declared"
        for status in self.terminal:
            assert not self.moves.get(status), f"{self.name}: terminal {status} has moves"
            assert not self.returns.get(status), f"{self.name}: terminal {status} has returns"
        for origin, targets in self.returns.items():
            assert {origin, *targets} <= self.statuses, f"{self.name}: returns name undeclared statuses"
        self._assert_acyclic()

    def _assert_acyclic(self) -> None:
        visiting: set[str] = set()
        done: set[str] = set()

        def visit(status: str) -> None:
            assert status not in visiting, f"{self.name}: cycle through {status}"
            if status in done:
                return
            visiting.add(status)
            for nxt in self.moves.get(status, frozenset()):
                visit(nxt)
            visiting.discard(status)
            done.add(status)

        for status in self.statuses:
            visit(status)

    def can(self, current: str, target: str) -> bool:
        return target in self.moves.get(current, frozenset()) or target in self.returns.get(
            current, frozenset()
        )

    def check(self, current: str, target: str) -> None:
        """Raise ``invalid_transition`` (409) unless ``current -> target`` is an allowed move."""
        if not self.can(current, target):
            raise conflict(
                f"{self.name}_invalid_transition",
                f"A {self.name} cannot move from {current} to {target}.",
                {"from": current, "to": target},
            )

    def is_terminal(self, status: str) -> bool:
        return status in self.terminal


ORDER = StateMachine(
    name="order",
    initial=frozenset({"open"}),
    moves={
        "open": frozenset({"paid", "cancelled"}),
        "paid": frozenset({"refunded"}),
        "cancelled": frozenset(),
        "refunded": frozenset(),
    },
    terminal=frozenset({"cancelled", "refunded"}),
)

# Payment attempts. ``pending``: the row is committed, the provider has not answered yet.
# ``unknown``: an answer was lost or inconclusive; it is never read as failed. ``reversing``: a
# reverse/cancel was requested and not yet confirmed. ``captured``: money moved to the merchant.
PAYMENT = StateMachine(
    name="payment",
    initial=frozenset({"pending", "captured"}),
    moves={
        "pending": frozenset({"unknown", "captured", "failed", "reversing"}),
        "unknown": frozenset({"captured", "failed", "reversing", "reversed"}),
        "reversing": frozenset({"reversed", "captured", "failed"}),
        "captured": frozenset({"refunded"}),
        "failed": frozenset(),
        "reversed": frozenset(),
        "refunded": frozenset(),
    },
    terminal=frozenset({"failed", "reversed", "refunded"}),
)

# Payments whose outcome is not settled yet: while one exists, its order can be neither completed,
# cancelled nor paid by another attempt. The schema enforces "at most one per order" as well.
PAYMENT_IN_FLIGHT = frozenset({"pending", "unknown", "reversing"})

REFUND = StateMachine(
    name="refund",
    initial=frozenset({"pending", "succeeded"}),
    moves={
        "pending": frozenset({"processing", "succeeded", "failed"}),
        "processing": frozenset({"succeeded", "failed"}),
        "succeeded": frozenset(),
        "failed": frozenset(),
    },
    terminal=frozenset({"succeeded", "failed"}),
)
REFUND_IN_FLIGHT = frozenset({"pending", "processing"})

MACHINES: dict[str, StateMachine] = {m.name: m for m in (ORDER, PAYMENT, REFUND)}

# --- merchants area (issue 12) ----------------------------------------------------------------------
# A merchant's lifecycle. ``applied``: an application exists, not yet sent for review. Operators may
# still create a merchant directly ``active`` (the operator vouches for it; existing merchants were
# migrated to ``active``). Only ``active`` takes provider payments (merchants/lifecycle.py).
MERCHANT = StateMachine(
    name="merchant",
    initial=frozenset({"applied", "active"}),
    moves={
        "applied": frozenset({"under_review", "terminated"}),
        "under_review": frozenset({"active", "rejected", "terminated"}),
        "rejected": frozenset({"terminated"}),
        "active": frozenset({"suspended", "terminated"}),
        "suspended": frozenset({"terminated"}),
        "terminated": frozenset(),
    },
    terminal=frozenset({"terminated"}),
    # a suspension is lifted; a rejected application is corrected and resubmitted for review
    returns={"suspended": frozenset({"active"}), "rejected": frozenset({"under_review"})},
)
MERCHANT_STATUSES = MERCHANT.statuses

CANCEL_REASONS = frozenset({"customer_cancelled", "cashier_cancelled", "payment_failed", "timeout", "other"})

PAYMENT_METHODS = frozenset({"cash", "wechat", "alipay"})
# Methods whose money sits with a provider (they need an out_trade_no, a provider reference, ...).
PROVIDER_METHODS = frozenset({"wechat", "alipay"})
