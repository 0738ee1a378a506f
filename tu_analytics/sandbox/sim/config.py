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
    """How the stream departs from a kind one: one object for simulator and streamer.

    - ``late_share``: share of records held back by coverage outages. A machine-day goes out
      of coverage (with odds ``8 * late_share``) for 1-5 h and uploads its backlog when it is
      back, so its records arrive minutes to hours late (measurement times untouched). 0 turns
      outages off. Apart from these, ~1 % of records arrive minutes to hours late one by one
      (``LATE_SHARE``) and the rest within 30 s.
    - ``disorder_share``: share of records whose Kafka timestamp is moved back by 2 s to 3 min,
      as a parallel ingestion job writes them (never before the measurement); the stream order
      stays that of the unmoved times, so a partition's timestamps go backwards.
    - ``duplicate_share``: share of device messages delivered twice upstream (the same payload
      again, 5 s to 10 min later, on a new offset), as a device resending after a lost ack.
    - ``clock_offset``: the sandbox clock; the fleet at real time ``t`` behaves as at
      ``t + clock_offset`` (timestamps stay real).
    """

    late_share: float = 0.03
    disorder_share: float = 0.03
    duplicate_share: float = 0.005
    clock_offset: timedelta = timedelta(0)

    def __post_init__(self) -> None:
        for name, top in (("late_share", 0.125), ("disorder_share", 0.5),
                          ("duplicate_share", 0.5)):
            value = getattr(self, name)
            if not 0.0 <= value <= top:
                raise ValueError(f"{name} must be within [0, {top}], got {value!r}")


def clock_offset(clock: datetime, now: datetime) -> timedelta:
    """The offset that makes ``now`` behave as ``clock``, in whole minutes (both aware)."""
    if clock.tzinfo is None or now.tzinfo is None:
        raise ValueError("the sandbox clock needs a time zone (e.g. 2026-03-04T10:00:00Z)")
    return timedelta(minutes=round((clock - now).total_seconds() / 60.0))


def to_ms(t: datetime) -> int:
    if t.tzinfo is None:
        raise ValueError("use time-zone-aware datetimes (e.g. tzinfo=UTC)")
    return round(t.timestamp() * 1000)
