"""The simulator's knobs and clock: one frozen config object shared by simulator and streamer."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

__all__ = ["DEFAULT_EPOCH", "LATE_SHARE", "MAX_DELAY_MS", "SimConfig", "clock_offset", "to_ms"]

DEFAULT_EPOCH: Final = datetime(2026, 1, 1, tzinfo=UTC)
MAX_DELAY_MS: Final = 6 * 3_600_000  # the latest a record may arrive after its measurement
LATE_SHARE: Final = 0.01  # share of records that arrive minutes to hours late
NORMAL_DELAY_CAP_MS: Final = 30_000  # on-time records arrive within 30 s


@dataclass(frozen=True, slots=True)
class SimConfig:
    """How the simulator departs from the plain fleet model (one object for simulator and
    streamer). ``clock_offset``: the fleet at real time ``t`` behaves as at ``t + offset``."""

    clock_offset: timedelta = timedelta(0)


def clock_offset(clock: datetime, now: datetime) -> timedelta:
    """The offset that makes ``now`` behave as ``clock``, in whole minutes (both aware)."""
    if clock.tzinfo is None or now.tzinfo is None:
        raise ValueError("the sandbox clock needs a time zone (e.g. 2026-03-04T10:00:00Z)")
    return timedelta(minutes=round((clock - now).total_seconds() / 60.0))


def to_ms(t: datetime) -> int:
    if t.tzinfo is None:
        raise ValueError("use time-zone-aware datetimes (e.g. tzinfo=UTC)")
    return round(t.timestamp() * 1000)
