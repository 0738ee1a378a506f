from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from tu_analytics import ConfigurationError
from tu_analytics._timespec import parse_duration, parse_time, resolve_range


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90),
        ("30m", 1800),
        ("2h", 7200),
        ("1d", 86400),
        ("1w", 604800),
        ("1h30m", 5400),
        ("500ms", 0.5),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("bad", ["", "2", "h", "-1h", "2x", "1h 2"])
def test_bad_durations(bad: str) -> None:
    with pytest.raises(ConfigurationError):
        parse_duration(bad)


def test_times_are_utc() -> None:
    assert parse_time("2026-11-27T08:00:00Z") == datetime(2026, 11, 27, 8, tzinfo=UTC)
    assert parse_time("2026-11-27T09:00:00+01:00") == datetime(2026, 11, 27, 8, tzinfo=UTC)
    assert parse_time(datetime(2026, 11, 27, 8)) == datetime(2026, 11, 27, 8, tzinfo=UTC)
    tz = timezone(timedelta(hours=-5))
    assert parse_time(datetime(2026, 11, 27, 3, tzinfo=tz)) == datetime(2026, 11, 27, 8, tzinfo=UTC)


def test_ranges() -> None:
    now = datetime(2026, 11, 27, 12, tzinfo=UTC)
    assert resolve_range(None, None, "2h", now) == (now - timedelta(hours=2), now)
    assert resolve_range("2026-11-27T10:00Z", "2026-11-27T11:00Z", None, now)[1] == now - timedelta(
        hours=1
    )
    with pytest.raises(ConfigurationError):
        resolve_range("2026-11-27T11:00Z", "2026-11-27T10:00Z", None, now)
    with pytest.raises(ConfigurationError):
        resolve_range(None, None, None, now)
    with pytest.raises(ConfigurationError):
        resolve_range("2026-11-27T10:00Z", None, "1h", now)
