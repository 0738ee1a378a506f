"""Window bounds: datetimes, ISO strings and ``"2h"``-style durations.

Naive datetimes and ISO strings without an offset are taken as UTC (Kafka timestamps are
UTC instants); say ``+02:00`` or pass an aware datetime for local times.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from .errors import ConfigurationError

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "w": 604800}
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|min|s|m|h|d|w)")


def parse_duration(text: str | timedelta) -> timedelta:
    if isinstance(text, timedelta):
        return text
    s = text.strip().lower().replace(" ", "")
    pos, seconds = 0, 0.0
    for m in _PART.finditer(s):
        if m.start() != pos:
            break
        seconds += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(s) or not s or seconds <= 0:
        raise ConfigurationError(
            f"cannot read duration {text!r}: use e.g. '90s', '30m', '2h', '1d', '1w' or '1h30m'"
        )
    return timedelta(seconds=seconds)


def parse_time(value: datetime | str) -> datetime:
    if isinstance(value, datetime):
        dt = value
    else:
        try:
            dt = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ConfigurationError(
                f"cannot read time {value!r}: use ISO 8601, e.g. 2026-11-27T08:00:00Z"
            ) from None
    return dt.replace(tzinfo=UTC) if dt.tzinfo is None else dt.astimezone(UTC)


def resolve_range(
    start: datetime | str | None,
    end: datetime | str | None,
    last: str | timedelta | None,
    now: datetime | None = None,
) -> tuple[datetime, datetime]:
    now = now or datetime.now(UTC)
    if last is not None:
        if start is not None:
            raise ConfigurationError("give either last= or start=, not both")
        stop = parse_time(end) if end is not None else now
        return stop - parse_duration(last), stop
    if start is None:
        raise ConfigurationError("a window needs start= (and optionally end=) or last=")
    begin = parse_time(start)
    stop = parse_time(end) if end is not None else now
    if stop <= begin:
        raise ConfigurationError(
            f"end ({stop.isoformat()}) must be after start ({begin.isoformat()})"
        )
    return begin, stop
