"""When a refund is looked at again: the provider's pace for a verifiable PROCESSING answer, seconds for
a call or query that got no answer (issue 16.2), never before the provider allows a query."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tillit.payments.engine import SCHEDULES, next_refund_check, refund_checkpoints

SENT = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)


def after(seconds: float) -> datetime:
    return SENT + timedelta(seconds=seconds)


def delay(provider: str, elapsed: float, *, answered: bool) -> float:
    due = next_refund_check(SCHEDULES[provider], SENT, after(elapsed), answered=answered)
    return (due - SENT).total_seconds() - elapsed


def test_wechat_processing_follows_the_providers_pace() -> None:
    # first query 1 min after applying, then the back-off steps (providers.md §1.5)
    assert refund_checkpoints(SCHEDULES["wechat"])[:3] == [60, 120, 420]
    assert delay("wechat", 60, answered=True) == 60
    assert delay("wechat", 120, answered=True) == 300


def test_wechat_lost_answer_is_looked_at_in_seconds_then_at_the_pace() -> None:
    assert delay("wechat", 0, answered=False) == 1  # the refund call's answer was lost
    assert delay("wechat", 60, answered=False) == 1  # the 1-minute query failed
    assert delay("wechat", 65, answered=False) == 2
    assert delay("wechat", 70, answered=False) == 3
    assert delay("wechat", 85, answered=False) == 5
    assert delay("wechat", 95, answered=False) == 25  # past the retry while: the next checkpoint (120 s)


def test_alipay_never_queries_before_ten_seconds() -> None:
    assert delay("alipay", 0, answered=False) == 10
    assert delay("alipay", 10, answered=False) == 1
    assert delay("alipay", 0, answered=True) == 10


def test_past_the_last_checkpoint_the_last_step_repeats() -> None:
    points = refund_checkpoints(SCHEDULES["wechat"])
    assert delay("wechat", points[-1], answered=True) == SCHEDULES["wechat"].refund_backoff[-1]
    assert delay("wechat", points[-1] + 7200.5, answered=True) == pytest.approx(1799.5)


@given(
    provider=st.sampled_from(sorted(SCHEDULES)),
    elapsed=st.floats(min_value=0, max_value=400_000, allow_nan=False),
    answered=st.booleans(),
)
def test_always_later_and_a_failure_is_never_looked_at_later_than_an_answer(
    provider: str, elapsed: float, answered: bool
) -> None:
    sched = SCHEDULES[provider]
    failed = delay(provider, elapsed, answered=False)
    ok = delay(provider, elapsed, answered=True)
    assert failed >= 1 - 1e-6 and ok >= 1 - 1e-6
    assert failed <= ok + 1e-6
    assert elapsed + failed >= sched.refund_query_not_before - 1e-6
    longest = max(sched.refund_first_query, *sched.refund_backoff)
    assert delay(provider, elapsed, answered=answered) <= longest + 1e-6
