"""Every Clock returns aware UTC, whatever offset its start carried (issue #9, defect 11)."""

from datetime import UTC, datetime, timedelta, timezone

import pytest

from tillit.domain.clock import ManualClock, ScaledClock

CN = timezone(timedelta(hours=8))


def test_scaled_clock_with_offset_start_returns_utc() -> None:
    clock = ScaledClock(1.0, 1_000_000.0, datetime(2026, 11, 20, 16, 0, tzinfo=CN))
    clock._time = lambda: 1_000_000.0  # freeze real time: the start itself is read back
    now = clock.now()
    assert now.utcoffset() == timedelta(0)
    assert now.replace(tzinfo=None) == datetime(2026, 11, 20, 8, 0)


def test_manual_clock_with_offset_start_returns_utc() -> None:
    now = ManualClock(datetime(2026, 11, 20, 16, 0, tzinfo=CN)).now()
    assert now.tzinfo is UTC and now.hour == 8


@pytest.mark.parametrize("cls", [ScaledClock, ManualClock])
def test_naive_start_refused(cls: type) -> None:
    with pytest.raises(ValueError):
        if cls is ScaledClock:
            ScaledClock(1.0, 0.0, datetime(2026, 11, 20, 16, 0))
        else:
            ManualClock(datetime(2026, 11, 20, 16, 0))
