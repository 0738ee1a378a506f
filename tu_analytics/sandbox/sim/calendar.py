"""Local calendars on the sandbox clock: which local day an instant falls on, and a day's
bounds in real (UTC) milliseconds, shifted by the clock offset (see ``SimConfig``)."""

from __future__ import annotations

from datetime import date, datetime
from zoneinfo import ZoneInfo

from .config import to_ms
from .model import DAY_MS, UNIX_ORD

__all__ = ["Calendar"]


class Calendar:
    """Day arithmetic per time zone with caches; ``shift_ms`` is the sandbox clock offset
    (the fleet at real ms ``t`` lives at clock ms ``t + shift_ms``)."""

    __slots__ = ("_days", "_tz", "shift_ms")

    def __init__(self, shift_ms: int = 0) -> None:
        self.shift_ms = shift_ms
        self._tz: dict[str, ZoneInfo] = {}
        self._days: dict[tuple[str, int], tuple[int, int, int]] = {}

    def zone(self, key: str) -> ZoneInfo:
        tz = self._tz.get(key)
        if tz is None:
            tz = self._tz[key] = ZoneInfo(key)
        return tz

    def local_day(self, ms: int, tz: ZoneInfo) -> int:
        """The local calendar day (ordinal) at real time ``ms`` on the sandbox clock."""
        return datetime.fromtimestamp((ms + self.shift_ms) / 1000, tz).date().toordinal()

    def day_info(self, tz: ZoneInfo, day: int) -> tuple[int, int, int]:
        """(real ms of local midnight, of the next midnight, of 00:00 at the noon offset)."""
        key = (tz.key, day)
        info = self._days.get(key)
        if info is None:
            d = date.fromordinal(day)
            d0 = to_ms(datetime(d.year, d.month, d.day, tzinfo=tz))
            n = date.fromordinal(day + 1)
            d1 = to_ms(datetime(n.year, n.month, n.day, tzinfo=tz))
            off = datetime(d.year, d.month, d.day, 12, tzinfo=tz).utcoffset()
            off_ms = 0 if off is None else int(off.total_seconds() * 1000)
            shift = self.shift_ms  # real ms = clock ms - shift
            info = self._days[key] = (d0 - shift, d1 - shift,
                                      (day - UNIX_ORD) * DAY_MS - off_ms - shift)
        return info
