"""A fleet alive at any hour: machines work at every UTC hour of every weekday, and the
sandbox clock (``SimConfig.clock_offset``, ``TU_SANDBOX_CLOCK``) moves the fleet's calendar."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from tu_analytics.sandbox.fleet import build_fleet
from tu_analytics.sandbox.simulator import SimConfig, Simulator, clock_offset
from tu_analytics.sandbox.streamer import parse_clock, sim_config_for

# Mondays of four weeks around the year and both sides of the spring DST changes
# (US 8 March, EU 29 March, Australia 5 April 2026).
WEEKS = (datetime(2026, 3, 2, tzinfo=UTC), datetime(2026, 3, 30, tzinfo=UTC),
         datetime(2026, 7, 6, tzinfo=UTC), datetime(2026, 10, 26, tzinfo=UTC))


def test_machines_work_at_every_utc_hour_of_every_weekday() -> None:
    sim = Simulator(build_fleet(7), seed=7)
    fewest: dict[tuple[int, int], int] = {}
    customers: set[str] = set()
    for monday in WEEKS:
        for hour in range(168):
            for minute in (0, 15, 30, 45):
                at = monday + timedelta(hours=hour, minutes=minute)
                working = sim.working(at)
                key = (at.weekday(), at.hour)
                fewest[key] = min(fewest.get(key, 999), len(working))
                customers |= {m.customer for m in working}
    assert len(fewest) == 168  # every (weekday, hour) was sampled
    assert min(fewest.values()) >= 2, sorted(fewest.items(), key=lambda kv: kv[1])[:5]
    assert len(customers) == 3


def test_night_and_round_the_clock_machines_exist() -> None:
    fleet = build_fleet(7)
    around = [m for m in fleet.machines if m.home_site.hours == "24/7"]
    assert len(around) >= 10
    assert {m.home_site.tz for m in around} == {"Australia/Perth", "Australia/Sydney"}
    # Some European generators or light towers work at 02:00 local on a Sunday night.
    sunday_night = datetime(2026, 3, 8, 1, 0, tzinfo=UTC)  # 02:00 in Copenhagen
    europe = [m for m in Simulator(fleet, seed=7).working(sunday_night)
              if m.home_site.tz.startswith("Europe/")]
    assert europe
    assert {m.type for m in europe} <= {"generator", "light tower"}


def test_the_sandbox_clock_moves_the_calendar_not_the_timestamps() -> None:
    fleet = build_fleet(7)
    real = datetime(2026, 3, 7, 2, 0, tzinfo=UTC)  # Saturday night
    clock = datetime(2026, 3, 4, 10, 0, tzinfo=UTC)  # Wednesday morning
    offset = clock_offset(clock, real)
    assert offset == clock - real
    shifted = Simulator(fleet, config=SimConfig(clock_offset=offset))
    plain = Simulator(fleet)
    at_clock = {m.machine_id for m in plain.working(clock)}
    assert {m.machine_id for m in shifted.working(real)} == at_clock
    assert len(at_clock) > 2 * len(plain.working(real))
    # Timestamps stay real: records received in the hour before `real` carry that hour.
    a, b = real - timedelta(hours=1), real
    recs = list(shifted.records(a, b))
    assert len(recs) > 1.5 * len(list(plain.records(a, b)))
    for r in recs:  # (a parallel writer may stamp a record up to 3 min early)
        assert a.timestamp() * 1000 - 180_000 <= r.receipt_ms < b.timestamp() * 1000


def test_clock_offsets_are_whole_minutes_and_need_a_zone() -> None:
    now = datetime(2026, 3, 7, 2, 0, 29, tzinfo=UTC)
    assert clock_offset(datetime(2026, 3, 7, 3, 0, tzinfo=UTC), now) == timedelta(minutes=60)
    with pytest.raises(ValueError, match="time zone"):
        clock_offset(datetime(2026, 3, 7, 3, 0), now)


def test_streamer_clock_from_env_text_and_kept_across_restarts(tmp_path: Path) -> None:
    now = datetime(2026, 3, 7, 2, 0, tzinfo=UTC)
    assert sim_config_for(tmp_path) == SimConfig()
    cfg = sim_config_for(tmp_path, "2026-03-04T10:00:00Z", now=now)
    assert cfg.clock_offset == datetime(2026, 3, 4, 10, tzinfo=UTC) - now
    with pytest.raises(ValueError, match="time zone"):
        parse_clock("2026-03-04T10:00:00")
    with pytest.raises(ValueError, match="ISO"):
        parse_clock("next tuesday")
    # Once the streamer has written its progress, the kept offset wins over a new clock.
    (tmp_path / "streamer.json").write_text(json.dumps({"clock_offset_ms": 60_000}))
    kept = sim_config_for(tmp_path, "2030-01-01T00:00:00Z", now=now)
    assert kept.clock_offset == timedelta(minutes=1)
