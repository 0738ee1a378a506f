"""Window bounds: datetimes, ISO strings and durations (``"2h"``, ``"2 days"``, ``"1h30m"``).

The one rule for times without a UTC offset (naive datetimes, ISO strings such as
``"2026-11-27T08:00"``): they are read in the local time zone of the computer running the
code, exactly as Python's ``datetime.timestamp()`` reads them, with a
:class:`~tu_analytics.errors.NaiveTimeWarning`. They are resolved once, where the call is
made (``window()``, the CLI, ``by_measurement_time``, later ``history``/``scan_archive``/Spark
drivers); everything downstream carries aware UTC datetimes and never resolves again, so a
Spark executor in another zone reads the same instants.

Times must lie in [1970-01-01, 9999-12-31]: Kafka timestamps are Unix epoch milliseconds.
"""

from __future__ import annotations

import re
import time
import warnings
from datetime import UTC, date, datetime, timedelta

from .errors import ConfigurationError, NaiveTimeWarning

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

_SECONDS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
# Every spelling of a unit, mapped to its short form ("m" is minutes, as in "30m").
_UNIT_WORDS = {
    "ms": ("ms", "msec", "msecs", "millisecond", "milliseconds"),
    "s": ("s", "sec", "secs", "second", "seconds"),
    "m": ("m", "min", "mins", "minute", "minutes"),
    "h": ("h", "hr", "hrs", "hour", "hours"),
    "d": ("d", "day", "days"),
    "w": ("w", "wk", "wks", "week", "weeks"),
}
_UNITS = {word: short for short, words in _UNIT_WORDS.items() for word in words}
# Longest spellings first, so "ms" is not read as "m" + "s" and "mins" not as "m" + ...
_ALTERNATIVES = "|".join(sorted(_UNITS, key=len, reverse=True))
_PART = re.compile(rf"\s*(\d+(?:\.\d+)?)\s*({_ALTERNATIVES})(?![a-z])\s*(?:,|and)?", re.I)
_HINT = "use e.g. '90s', '30m', '2h', '1d', '1w', '1h30m', '2 days' or '1 hour'"


def parse_duration(text: str | timedelta, *, allow_zero: bool = False) -> timedelta:
    """A positive duration (``allow_zero``: or zero) from a timedelta or text."""
    if isinstance(text, timedelta):
        td = text
    elif isinstance(text, str):
        td = _duration_text(text, allow_zero)
    else:
        raise ConfigurationError(
            f"a duration must be text or a timedelta, not {type(text).__name__} {text!r}: {_HINT}"
        )
    if td < timedelta(0) or (td == timedelta(0) and not allow_zero):
        raise ConfigurationError(f"duration {text!r} must be positive: {_HINT}")
    return td


def _duration_text(text: str, allow_zero: bool) -> timedelta:
    s = text.strip()
    if allow_zero and s == "0":
        return timedelta(0)
    pos, seconds = 0, 0.0
    for m in _PART.finditer(s):
        if m.start() != pos:
            break
        seconds += float(m.group(1)) * _SECONDS[_UNITS[m.group(2).lower()]]
        pos = m.end()
    if pos != len(s) or not s:
        raise ConfigurationError(f"cannot read duration {text!r}: {_HINT}")
    try:
        return timedelta(seconds=seconds)
    except OverflowError:
        raise ConfigurationError(
            f"duration {text!r} is longer than any window can be (Kafka time starts in 1970)"
        ) from None


def parse_time(value: datetime | date | str, *, stacklevel: int = 2) -> datetime:
    """An aware UTC datetime; naive input is read in local time with a NaiveTimeWarning.

    A ``date`` means its local midnight, like an ISO date string.

    ``stacklevel`` points the warning at the user's call (as for ``warnings.warn``).
    """
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, date):
        dt = datetime(value.year, value.month, value.day)
    elif isinstance(value, str):
        dt = _iso(value)
    else:
        raise ConfigurationError(
            f"a time must be a datetime or an ISO 8601 string, not {type(value).__name__} "
            f"{value!r}"
        )
    if dt.tzinfo is None or dt.utcoffset() is None:
        dt = _from_local(value, dt, stacklevel + 1)
    try:
        utc = dt.astimezone(UTC)
    except (OverflowError, ValueError):
        raise ConfigurationError(f"time {value!r} is outside 1970..9999") from None
    return _checked(utc, value)


def _iso(text: str) -> datetime:
    try:
        return datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ConfigurationError(
            f"cannot read time {text!r}: use ISO 8601, e.g. 2026-11-27T08:00:00Z, between "
            "1970 and 9999"
        ) from None


def _from_local(given: object, naive: datetime, stacklevel: int) -> datetime:
    # datetime.timestamp() is Python's own reading of a naive time (local, DST-aware).
    try:
        resolved = datetime.fromtimestamp(naive.timestamp(), UTC)
    except (OverflowError, OSError, ValueError):
        raise ConfigurationError(f"time {given!r} is outside 1970..9999") from None
    zone = time.strftime("%Z", time.localtime(resolved.timestamp())) or "local"
    warnings.warn(NaiveTimeWarning(given, resolved.isoformat(), zone), stacklevel=stacklevel)
    return resolved


def _checked(dt: datetime, given: object) -> datetime:
    if dt < EPOCH:
        raise ConfigurationError(
            f"time {given!r} is before 1970-01-01T00:00Z, where Kafka timestamps begin"
        )
    return dt


def resolve_range(
    start: datetime | date | str | None,
    end: datetime | date | str | None,
    last: str | timedelta | None,
    now: datetime | None = None,
    *,
    stacklevel: int = 2,
) -> tuple[datetime, datetime]:
    """``[start, end)`` as aware UTC datetimes, resolved once for every engine downstream."""
    now = now or datetime.now(UTC)
    level = stacklevel + 1
    if last is not None:
        if start is not None:
            raise ConfigurationError("give either last= or start=, not both")
        stop = parse_time(end, stacklevel=level) if end is not None else now
        span = parse_duration(last)
        if span > stop - EPOCH:
            raise ConfigurationError(
                f"last={last!r} reaches before 1970-01-01T00:00Z, where Kafka timestamps begin"
            )
        return stop - span, stop
    if start is None:
        raise ConfigurationError("a window needs start= (and optionally end=) or last=")
    begin = parse_time(start, stacklevel=level)
    stop = parse_time(end, stacklevel=level) if end is not None else now
    if stop <= begin:
        raise ConfigurationError(
            f"end ({stop.isoformat()}) must be after start ({begin.isoformat()})"
        )
    return begin, stop
