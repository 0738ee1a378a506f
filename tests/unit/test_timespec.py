from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from tu_analytics import ConfigurationError, NaiveTimeWarning
from tu_analytics._timespec import parse_duration, parse_time, resolve_range


@pytest.fixture
def copenhagen(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """This process's local zone set to Europe/Copenhagen (UTC+1 in winter, +2 in summer)."""
    monkeypatch.setenv("TZ", "Europe/Copenhagen")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


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
        ("2 days", 172800),
        ("1 hour", 3600),
        ("1.5 hours", 5400),
        ("90 minutes", 5400),
        ("30 min", 1800),
        ("2 weeks", 1209600),
        ("10 seconds", 10),
        ("2 hours 30 minutes", 9000),
        ("1 day, 2 hours", 93600),
        ("1 hour and 30 mins", 5400),
        ("2H", 7200),
        ("2 Days", 172800),
    ],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    "bad", ["", "2", "h", "-1h", "2x", "1h 2", "0h", "2 dayz", "2 days ago", "hour", "0"]
)
def test_bad_durations(bad: str) -> None:
    with pytest.raises(ConfigurationError, match="duration"):
        parse_duration(bad)


@pytest.mark.parametrize("bad", [2, 2.5, None, b"2h", ["2h"]])
def test_a_duration_that_is_not_text_is_a_clear_error(bad: object) -> None:
    # last=2 used to raise a raw AttributeError ('int' object has no attribute 'strip').
    with pytest.raises(ConfigurationError, match=r"text or a timedelta.*e\.g\. '90s'"):
        parse_duration(bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError):
        resolve_range(None, None, bad, datetime(2026, 11, 27, tzinfo=UTC))  # type: ignore[arg-type]


def test_zero_only_where_allowed() -> None:
    assert parse_duration("0", allow_zero=True) == timedelta(0)
    assert parse_duration("0s", allow_zero=True) == timedelta(0)
    with pytest.raises(ConfigurationError):
        parse_duration("-5m", allow_zero=True)


def test_times_with_an_offset_are_exact_and_do_not_warn() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert parse_time("2026-11-27T08:00:00Z") == datetime(2026, 11, 27, 8, tzinfo=UTC)
        assert parse_time("2026-11-27T09:00:00+01:00") == datetime(2026, 11, 27, 8, tzinfo=UTC)
        tz = timezone(timedelta(hours=-5))
        assert parse_time(datetime(2026, 11, 27, 3, tzinfo=tz)) == datetime(
            2026, 11, 27, 8, tzinfo=UTC
        )


@pytest.mark.usefixtures("copenhagen")
def test_naive_times_are_local_like_python_timestamp() -> None:
    naive = datetime(2026, 11, 27, 9)  # 09:00 in Copenhagen in November = 08:00Z
    with pytest.warns(NaiveTimeWarning, match=r"local time \(CET\)") as rec:
        got = parse_time(naive)
    assert got == datetime(2026, 11, 27, 8, tzinfo=UTC)
    assert got.timestamp() == naive.timestamp()
    assert rec[0].filename == __file__  # the warning points at the caller's line
    warning = rec[0].message
    assert isinstance(warning, NaiveTimeWarning)
    assert (warning.value, warning.zone) == (naive, "CET")
    with pytest.warns(NaiveTimeWarning, match="CEST"):
        assert parse_time("2026-07-01T10:00") == datetime(2026, 7, 1, 8, tzinfo=UTC)
    with pytest.warns(NaiveTimeWarning):
        assert parse_time("2026-11-27") == datetime(2026, 11, 26, 23, tzinfo=UTC)
    with pytest.warns(NaiveTimeWarning):
        assert parse_time(date(2026, 11, 27)) == datetime(2026, 11, 26, 23, tzinfo=UTC)


@pytest.mark.usefixtures("copenhagen")
def test_a_window_from_naive_now_ends_now_not_an_hour_ahead() -> None:
    before = datetime.now(UTC)
    with pytest.warns(NaiveTimeWarning) as rec:
        start, end = resolve_range(None, datetime.now(), "1h")
    assert before <= end <= datetime.now(UTC)
    assert end - start == timedelta(hours=1)
    assert len(rec) == 1  # resolved once


def test_naive_rule_in_a_fresh_process_with_tz_set() -> None:
    # The same rule as the process's own datetime.timestamp(), whatever TZ says.
    code = (
        "import json, warnings\n"
        "from datetime import datetime\n"
        "from tu_analytics._timespec import resolve_range\n"
        "with warnings.catch_warnings(record=True) as w:\n"
        "    warnings.simplefilter('always')\n"
        "    s, e = resolve_range('2026-11-27T09:00', '2026-11-27T10:00', None)\n"
        "print(json.dumps([s.isoformat(), e.isoformat(), [type(x.message).__name__ for x in w],"
        " datetime(2026, 11, 27, 9).timestamp()]))\n"
    )
    for zone, start in (("Europe/Copenhagen", "2026-11-27T08:00:00+00:00"),
                        ("America/Chicago", "2026-11-27T15:00:00+00:00"),
                        ("UTC", "2026-11-27T09:00:00+00:00")):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True, env={**os.environ, "TZ": zone})
        s, _e, kinds, ts = json.loads(out.stdout)
        assert s == start, zone
        assert datetime.fromisoformat(s).timestamp() == ts
        assert kinds == ["NaiveTimeWarning", "NaiveTimeWarning"]


def test_ranges() -> None:
    now = datetime(2026, 11, 27, 12, tzinfo=UTC)
    assert resolve_range(None, None, "2h", now) == (now - timedelta(hours=2), now)
    assert resolve_range(None, None, "2 hours", now) == (now - timedelta(hours=2), now)
    assert resolve_range("2026-11-27T10:00Z", "2026-11-27T11:00Z", None, now)[1] == now - timedelta(
        hours=1
    )
    with pytest.raises(ConfigurationError):
        resolve_range("2026-11-27T11:00Z", "2026-11-27T10:00Z", None, now)
    with pytest.raises(ConfigurationError):
        resolve_range(None, None, None, now)
    with pytest.raises(ConfigurationError):
        resolve_range("2026-11-27T10:00Z", None, "1h", now)


@pytest.mark.parametrize(
    ("start", "end", "last"),
    [
        ("1900-01-01T00:00Z", "2026-01-01T00:00Z", None),
        ("1969-12-31T23:59:59Z", "2026-01-01T00:00Z", None),
        (datetime(1900, 1, 1, tzinfo=UTC), None, None),
        ("10000-01-01T00:00Z", None, None),
        ("2026-01-01T00:00Z", "99999-01-01T00:00Z", None),
        ("9999-12-31T23:00-05:00", None, None),
        (None, None, "100000w"),
        (None, None, "1000000000w"),
        (None, None, "999999999999999999999d"),
        (None, "1970-01-01T01:00Z", "2h"),
        ("not a time", None, None),
        (20261127, None, None),
    ],
)
def test_times_outside_kafka_time_are_configuration_errors(
    start: object, end: object, last: object
) -> None:
    now = datetime(2026, 11, 27, 12, tzinfo=UTC)
    with pytest.raises(ConfigurationError):
        resolve_range(start, end, last, now)  # type: ignore[arg-type]


def test_the_edges_of_kafka_time_are_allowed() -> None:
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    assert resolve_range("1970-01-01T00:00Z", "1970-01-02T00:00Z", None)[0] == epoch
    assert resolve_range(None, "1970-01-01T02:00Z", "2h")[0] == epoch
    assert parse_time("9999-12-31T23:59:59Z").year == 9999
