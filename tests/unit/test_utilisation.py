"""Utilisation functions on small hand-built main frames (columns as in docs/frames.md)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import polars as pl
import pytest

from tu_analytics.counters import TIME
from tu_analytics.utilisation import (
    activity_summary,
    daily_hours,
    fleet_utilisation,
    hour_of_day,
    machine_state,
)

OP = "CumulativeOperatingHours"
IDLE = "CumulativeIdleHours"

IDENTITY_COLUMNS = ["tz", "EquipmentID", "OEMName", "Model", "site"]


def at(hour: float, day: int = 1) -> datetime:
    return datetime(2024, 1, day, tzinfo=UTC) + timedelta(hours=hour)


def main_frame(rows: list[dict[str, object]]) -> pl.DataFrame:
    """Records with any of: MachineId, op, op_t, idle, idle_t, lat, lon, loc_t, k (receipt)."""
    return pl.DataFrame(
        {
            "MachineId": [r["MachineId"] for r in rows],
            "kafka_timestamp": [r.get("k") for r in rows],
            OP: [r.get("op") for r in rows],
            f"{OP}_datetime": [r.get("op_t") for r in rows],
            IDLE: [r.get("idle") for r in rows],
            f"{IDLE}_datetime": [r.get("idle_t") for r in rows],
            "Latitude": [r.get("lat") for r in rows],
            "Longitude": [r.get("lon") for r in rows],
            "Location_datetime": [r.get("loc_t") for r in rows],
        },
        schema={
            "MachineId": pl.String,
            "kafka_timestamp": TIME,
            OP: pl.Float64,
            f"{OP}_datetime": TIME,
            IDLE: pl.Float64,
            f"{IDLE}_datetime": TIME,
            "Latitude": pl.Float64,
            "Longitude": pl.Float64,
            "Location_datetime": TIME,
        },
    )


def rec(
    machine: str, t: datetime, op: float | None = None, idle: float | None = None
) -> dict[str, object]:
    row: dict[str, object] = {"MachineId": machine, "k": t}
    if op is not None:
        row.update(op=op, op_t=t)
    if idle is not None:
        row.update(idle=idle, idle_t=t)
    return row


@pytest.fixture
def two_days() -> pl.DataFrame:
    """m1 works across midnight; m2 has a reset and no idle counter."""
    return main_frame(
        [
            rec("m1", at(20, 1), op=100.0, idle=10.0),
            rec("m1", at(4, 2), op=106.0, idle=12.0),  # 8 h span, 6 op / 2 idle
            rec("m1", at(22, 2), op=106.0, idle=12.0),  # parked all day
            rec("m2", at(8, 1), op=50.0),
            rec("m2", at(12, 1), op=53.0),
            rec("m2", at(14, 1), op=1.0),  # reset (device swap)
            rec("m2", at(16, 1), op=2.0),
        ]
    )


def test_daily_hours_spreads_across_midnight(two_days: pl.DataFrame) -> None:
    out = daily_hours(two_days)
    assert out.columns == [
        "MachineId",
        "date",
        "operating_hours",
        "idle_hours",
        "utilisation",
        *IDENTITY_COLUMNS,
    ]
    assert out.schema["date"] == pl.Date
    m1 = out.filter(pl.col("MachineId") == "m1")
    assert m1["date"].to_list() == [date(2024, 1, 1), date(2024, 1, 2)]
    # 20:00 -> 04:00 (+6 op, +2 idle): 4 h on the 1st, 4 h on the 2nd -> 3 + 3 op, 1 + 1 idle;
    # 04:00 -> 22:00 adds 0 on the 2nd
    assert m1["operating_hours"].to_list() == pytest.approx([3.0, 3.0])
    assert m1["idle_hours"].to_list() == pytest.approx([1.0, 1.0])
    # utilisation over the whole calendar day: 3 / 24
    assert m1["utilisation"].to_list() == pytest.approx([0.125, 0.125])
    m2 = out.filter(pl.col("MachineId") == "m2")
    # 08->12 +3 ; 12->14 reset (0) ; 14->16 +1  => 4 h; no idle counter -> null, not 0
    assert m2["operating_hours"].to_list() == pytest.approx([4.0])
    assert m2["idle_hours"].to_list() == [None]


def test_daily_hours_shift_denominator_and_timezone(two_days: pl.DataFrame) -> None:
    shift = daily_hours(two_days, shift_hours=8).filter(pl.col("MachineId") == "m1")
    assert shift["utilisation"].to_list() == pytest.approx([3 / 8, 3 / 8])
    # In Tokyo (UTC+9) the 20:00 UTC -> 04:00 UTC interval is 05:00 -> 13:00 local on 2 Jan: all
    # 6 h land on 2 Jan; 04:00 -> 22:00 UTC is 13:00 (2nd) -> 07:00 (3rd) local, delta 0
    tokyo = daily_hours(two_days, tz="Asia/Tokyo").filter(pl.col("MachineId") == "m1")
    assert tokyo["date"].to_list() == [date(2024, 1, 2), date(2024, 1, 3)]
    assert tokyo["operating_hours"].to_list() == pytest.approx([6.0, 0.0])


def test_daily_hours_dst_day_has_23_hours() -> None:
    # Copenhagen 2024-03-31 is 23 h long; a machine running the full local day grows 23 h.
    start = datetime(2024, 3, 30, 23, tzinfo=UTC)  # 00:00 CET on the 31st
    end = datetime(2024, 3, 31, 22, tzinfo=UTC)  # 00:00 CEST on 1 April
    frame = main_frame([rec("m1", start, op=0.0), rec("m1", end, op=23.0)])
    out = daily_hours(frame, tz="Europe/Copenhagen")
    assert out["date"].to_list() == [date(2024, 3, 31)]
    assert out["operating_hours"].to_list() == pytest.approx([23.0])
    assert out["utilisation"].to_list() == pytest.approx([1.0])  # 23 h / a 23-hour day


def test_fleet_utilisation_counts_covering_machines() -> None:
    frame = main_frame(
        [
            rec("m1", at(8), op=10.0, idle=1.0),
            rec("m1", at(10), op=11.5, idle=1.5),  # 08-10: +1.5 op, +0.5 idle
            rec("m2", at(9), op=20.0),
            rec("m2", at(10), op=21.0),  # 09-10: +1 op, no idle counter
            rec("m3", at(12), op=5.0),  # one reading: covers nothing
        ]
    )
    out = fleet_utilisation(frame)
    assert out.columns == [
        "bucket_start",
        "machines_reporting",
        "operating_hours",
        "idle_hours",
        "utilisation",
    ]
    assert out["bucket_start"].to_list() == [at(8), at(9)]
    # 08:00: only m1 covers it: 0.75 op, 0.25 idle, 0.75 / (1 * 1 h)
    # 09:00: m1 0.75 + m2 1.0 = 1.75 op; idle 0.25 (m1); 1.75 / (2 * 1 h)
    assert out["machines_reporting"].to_list() == [1, 2]
    assert out["operating_hours"].to_list() == pytest.approx([0.75, 1.75])
    assert out["idle_hours"].to_list() == pytest.approx([0.25, 0.25])
    assert out["utilisation"].to_list() == pytest.approx([0.75, 0.875])


def test_fleet_utilisation_is_dense_and_supports_other_buckets() -> None:
    frame = main_frame(
        [
            rec("m1", at(8), op=0.0),
            rec("m1", at(9), op=0.5),
            rec("m1", at(11), op=0.5),
            rec("m1", at(11.5), op=10.0),  # jump: gap, not covered
            rec("m1", at(14), op=10.0),
            rec("m1", at(15), op=11.0),
        ]
    )
    hourly = fleet_utilisation(frame)
    # 08 (0.5), 09 + 10 (0), 11 and 12, 13 covered only by the jump or the 11:30-14:00 zero interval
    assert hourly["bucket_start"].to_list() == [at(h) for h in range(8, 15)]
    assert hourly["machines_reporting"].to_list() == [1, 1, 1, 1, 1, 1, 1]
    assert hourly["operating_hours"].to_list() == pytest.approx([0.5, 0, 0, 0, 0, 0, 1.0])
    two_hourly = fleet_utilisation(frame, every=timedelta(hours=2))
    # 08-10: 0.5 over 2 h -> 0.25
    assert two_hourly["utilisation"].to_list()[0] == pytest.approx(0.25)


def test_fleet_utilisation_gap_only_bucket_has_no_machines() -> None:
    frame = main_frame(
        [
            rec("m1", at(8), op=0.0),
            rec("m1", at(9), op=1.0),
            rec("m1", at(12), op=500.0),  # 09-12: jump -> not covered
            rec("m1", at(13), op=500.5),
        ]
    )
    out = fleet_utilisation(frame)
    assert out["bucket_start"].to_list() == [at(h) for h in range(8, 13)]
    assert out["machines_reporting"].to_list() == [1, 0, 0, 0, 1]
    assert out["operating_hours"].to_list()[1:4] == [None, None, None]
    assert out["utilisation"].to_list() == pytest.approx([1.0, None, None, None, 0.5])


def test_hour_of_day_is_dense_per_machine() -> None:
    frame = main_frame(
        [
            rec("m1", at(7.5, day=1), op=0.0),
            rec("m1", at(9, day=1), op=1.5),  # 07:30-09:00: 0.5 at 07, 1.0 at 08
            rec("m1", at(8, day=2), op=1.5),
            rec("m1", at(9, day=2), op=2.5),  # 08:00-09:00 on day 2: 1.0 at 08
            rec("m2", at(8, day=1), op=1.0),  # single reading: no interval, no rows
        ]
    )
    out = hour_of_day(frame)
    assert out.columns == ["MachineId", "hour", "operating_hours", *IDENTITY_COLUMNS]
    assert out.height == 24
    assert out["hour"].to_list() == list(range(24))
    hours = dict(zip(out["hour"].to_list(), out["operating_hours"].to_list(), strict=True))
    # 07: 0.5 ; 08: 1.0 (day 1) + 1.0 (day 2) = 2.0 ; the parked night adds zeros
    assert hours[7] == pytest.approx(0.5)
    assert hours[8] == pytest.approx(2.0)
    assert sum(hours.values()) == pytest.approx(2.5)
    # Local time: 08:00 UTC is 09:00 in Copenhagen (CET, UTC+1)
    local = hour_of_day(frame, tz="Europe/Copenhagen")
    assert local.filter(pl.col("hour") == 9)["operating_hours"].item() == pytest.approx(2.0)


def test_machine_state_rules() -> None:
    now = at(12)
    ten = 10 / 60
    frame = main_frame(
        [
            # operating: +9 min in the last 10 min (90 %)
            rec("op", at(11.7), op=100.0),
            rec("op", at(11.7 + ten), op=100.0 + 9 / 60),
            # idle: idle grows 8 of 10 minutes (and operating too): idle wins
            rec("idle", at(11.7), op=50.0, idle=5.0),
            rec("idle", at(11.7 + ten), op=50.0 + 8 / 60, idle=5.0 + 8 / 60),
            # off: +2 min in 10 min (20 %)
            rec("off", at(11.7), op=10.0),
            rec("off", at(11.7 + ten), op=10.0 + 2 / 60),
            # no recent data: last measurement 3 h before now
            rec("gone", at(8.8), op=1.0),
            rec("gone", at(9), op=1.2),
            # stale counters (grew 100 % but 5 h ago), recent position only -> off
            {**rec("stale", at(6), op=1.0)},
            {**rec("stale", at(7), op=2.0)},
            {"MachineId": "stale", "k": at(11.9), "lat": 57.0, "lon": 10.0, "loc_t": at(11.9)},
            # reset in the last interval -> not growing -> off
            rec("reset", at(11.7), op=500.0),
            rec("reset", at(11.7 + ten), op=0.1),
        ]
    )
    out = machine_state(frame, now=now)
    assert out.columns == ["MachineId", "state", "last_seen"]
    states = dict(zip(out["MachineId"].to_list(), out["state"].to_list(), strict=True))
    assert states == {
        "gone": "no recent data",
        "idle": "idle",
        "off": "off",
        "op": "operating",
        "reset": "off",
        "stale": "off",
    }
    seen = dict(zip(out["MachineId"].to_list(), out["last_seen"].to_list(), strict=True))
    assert seen["stale"] == at(11.9)  # any field counts as a measurement
    assert seen["gone"] == at(9)


def test_machine_state_as_of_now_ignores_later_data() -> None:
    frame = main_frame(
        [
            rec("m1", at(10), op=0.0),
            rec("m1", at(11), op=0.9),  # 90 % -> operating at 11:30
            rec("m1", at(12), op=0.9),  # measured after `now`: not used
            {**rec("m1", at(11.25), op=0.9), "k": at(13)},  # received after `now`: not used
        ]
    )
    as_of = machine_state(frame, now=at(11.5))
    assert as_of["state"].to_list() == ["operating"]
    assert as_of["last_seen"].to_list() == [at(11)]
    # default now = newest kafka_timestamp (13:00): the 11:00 -> 11:15 interval (0 growth)...
    # ...is superseded by 11:15 -> 12:00 (0 growth) -> off
    latest = machine_state(frame)
    assert latest["state"].to_list() == ["off"]
    assert latest["last_seen"].to_list() == [at(12)]
    # stale_after: at 15:00 the 12:00 reading is 3 h old
    assert machine_state(frame, now=at(15))["state"].to_list() == ["no recent data"]
    assert machine_state(frame, now=at(15), stale_after="4h")["state"].to_list() == ["off"]


def test_functions_accept_lazy_frames_and_missing_idle_columns() -> None:
    frame = main_frame([rec("m1", at(8), op=0.0), rec("m1", at(9), op=1.0)])
    narrow = frame.select("MachineId", "kafka_timestamp", OP, f"{OP}_datetime").lazy()
    assert daily_hours(narrow)["operating_hours"].to_list() == pytest.approx([1.0])
    assert daily_hours(narrow)["idle_hours"].to_list() == [None]
    assert fleet_utilisation(narrow)["utilisation"].to_list() == pytest.approx([1.0])
    assert hour_of_day(narrow).height == 24
    assert machine_state(narrow)["state"].to_list() == ["operating"]


def test_empty_input_gives_empty_frames_with_the_widget_columns() -> None:
    empty = main_frame([])
    assert daily_hours(empty).columns == [
        "MachineId",
        "date",
        "operating_hours",
        "idle_hours",
        "utilisation",
        *IDENTITY_COLUMNS,
    ]
    for result in (daily_hours(empty), fleet_utilisation(empty), hour_of_day(empty)):
        assert result.height == 0
    state = machine_state(empty)
    assert state.height == 0
    assert state.columns == ["MachineId", "state", "last_seen"]


def test_site_time_puts_each_machine_in_its_local_zone() -> None:
    """Two machines run 08:00–10:00 local on 2 Jan: one in Denmark, one in Denver."""
    rows = []
    for mid, lat, lon, utc_start in (("dk", 56.16, 10.22, 7), ("us", 39.74, -104.99, 15)):
        for h, op in ((0, 0.0), (2, 2.0)):
            t = at(utc_start + h, 2)
            rows.append({**rec(mid, t, op=op), "lat": lat, "lon": lon, "loc_t": t})
    main = main_frame(rows)
    hours = hour_of_day(main, tz="site").filter(pl.col("operating_hours") > 0)
    assert dict(hours.group_by("MachineId").agg(pl.col("tz").first()).iter_rows()) == {
        "dk": "Europe/Copenhagen",
        "us": "America/Denver",
    }
    for mid in ("dk", "us"):
        assert hours.filter(pl.col("MachineId") == mid).get_column("hour").to_list() == [8, 9]
    days = daily_hours(main, tz="site")
    assert days.get_column("date").to_list() == [date(2024, 1, 2), date(2024, 1, 2)]
    assert days.get_column("site").to_list() == ["56.2°N 10.2°E", "Denver"]
    # One zone for everyone, as before.
    utc = hour_of_day(main, tz="UTC").filter(pl.col("operating_hours") > 0)
    assert sorted(set(utc.get_column("hour").to_list())) == [7, 8, 15, 16]


def test_identity_is_as_known_at_the_end_of_each_day() -> None:
    rows = [rec("m", at(8, 1), op=0.0), rec("m", at(10, 1), op=2.0)]
    rows += [rec("m", at(8, 2), op=2.0), rec("m", at(10, 2), op=4.0)]
    main = main_frame(rows).with_columns(pl.Series("EquipmentID", ["EX-1", None, "EX-2", None]))
    days = daily_hours(main)
    assert days.select("date", "EquipmentID").rows() == [
        (date(2024, 1, 1), "EX-1"),  # the rename on day 2 does not rewrite day 1
        (date(2024, 1, 2), "EX-2"),
    ]


def test_activity_summary_says_what_is_true_at_any_hour() -> None:
    # Three machines worked until Fri 5 Jan 2024 15:05 UTC (16:05 in Copenhagen), then stopped.
    friday = datetime(2024, 1, 5, 14, 5, tzinfo=UTC)
    rows = []
    for mid in ("a", "b", "c"):
        for h, op in ((0, 10.0), (1, 11.0), (3, 11.0), (60, 11.0)):
            t = friday + timedelta(hours=h)
            rows.append({**rec(mid, t, op=op), "lat": 55.71, "lon": 12.6, "loc_t": t})
    main = main_frame(rows)
    assert activity_summary(main, tz="Europe/Copenhagen") == (
        "all 3 machines off since Fri 05 Jan 16:05 CET"
    )
    assert activity_summary(main, tz="site") == (
        "all 3 machines off since Fri 05 Jan 16:05 local (Europe/Copenhagen)"
    )
    working = activity_summary(main, now=friday + timedelta(hours=1))
    assert working == "3 of 3 machines operating"
    assert activity_summary(main_frame([])) == "no machine in this data"
