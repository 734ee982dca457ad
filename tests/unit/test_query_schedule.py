"""When an unknown payment is first asked about (issue 11.6, providers.md §1.2 and §2.3): WeChat waits
5 s after the unknown answer; Alipay polls from 5 s after the trade was created, so after a pay call
that hung past that it asks a second after the answer, never sooner."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from tillit.payments.engine import SCHEDULES, first_query_due

CREATED = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)


def first(provider: str, answered_after: float) -> float:
    answered = CREATED + timedelta(seconds=answered_after)
    return (first_query_due(SCHEDULES[provider], CREATED, answered) - CREATED).total_seconds()


def test_wechat_waits_five_seconds_after_the_unknown_answer() -> None:
    assert first("wechat", 0.3) == 5.3
    assert first("wechat", 10) == 15  # a pay call that hung 10 s: still 5 s after its answer


def test_alipay_polls_from_five_seconds_after_creation() -> None:
    assert first("alipay", 0.3) == 5
    assert first("alipay", 10) == 11  # hung past 5 s: ask a second after the answer


@given(st.sampled_from(["wechat", "alipay"]), st.floats(min_value=0, max_value=120))
def test_never_before_the_answer_nor_before_the_rules(provider: str, answered_after: float) -> None:
    due = first(provider, answered_after)
    sched = SCHEDULES[provider]
    assert due >= answered_after + sched.query_retry - 1e-6
    assert due >= sched.first_query - 1e-6
    assert due <= answered_after + sched.first_query + 1e-6
