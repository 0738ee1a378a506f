"""counter_deltas and allocate on small hand-built frames (columns as in docs/frames.md)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest

from tu_analytics.counters import TIME, allocate, counter_deltas, duration_string

OP = "CumulativeOperatingHours"


def at(hour: float, day: int = 1) -> datetime:
    """2024-01-<day> at a fractional UTC hour."""
    return datetime(2024, 1, day, tzinfo=UTC) + timedelta(hours=hour)


def readings(
    rows: Sequence[tuple[str, float | None, datetime | None, datetime]], counter: str = OP
) -> pl.DataFrame:
    """(MachineId, value, measured, received) -> a main-shaped frame for one counter."""
    return pl.DataFrame(
        {
            "MachineId": [r[0] for r in rows],
            counter: [r[1] for r in rows],
            f"{counter}_datetime": [r[2] for r in rows],
            "kafka_timestamp": [r[3] for r in rows],
        },
        schema={
            "MachineId": pl.String,
            counter: pl.Float64,
            f"{counter}_datetime": TIME,
            "kafka_timestamp": TIME,
        },
    )


def test_measurement_order_not_arrival_order_and_duplicates_dropped() -> None:
    main = readings(
        [
            ("m1", 102.0, at(10), at(10.01)),
            ("m1", 100.0, at(8), at(8.01)),
            ("m1", 100.0, at(8), at(9.5)),  # the 08:00 reading repeated in a later record
            ("m1", 101.0, at(9), at(11)),  # arrived last, measured in the middle
            ("m1", None, at(9.5), at(9.5)),  # no value: ignored
            ("m2", 5.0, at(8), at(8)),
        ]
    )
    d = counter_deltas(main, OP)
    assert isinstance(d, pl.DataFrame)
    # m1 in measurement order: 08:00 100 -> 09:00 101 -> 10:00 102; m2 has one reading, no interval
    assert d["MachineId"].to_list() == ["m1", "m1"]
    assert d["start"].to_list() == [at(8), at(9)]
    assert d["end"].to_list() == [at(9), at(10)]
    assert d["delta"].to_list() == [1.0, 1.0]  # 101-100, 102-101
    assert d["elapsed_hours"].to_list() == pytest.approx([1.0, 1.0])
    assert not d["reset"].any()
    assert not d["gap"].any()
    # received = later receipt of the two readings (earliest copy of each): max(08:00.6, 11:00)
    assert d["received"].to_list() == [at(11), at(11)]


def test_duplicate_measurement_keeps_first_received_value() -> None:
    main = readings(
        [
            ("m1", 100.0, at(8), at(8)),
            ("m1", 101.5, at(9), at(9.2)),  # received second
            ("m1", 101.0, at(9), at(9.1)),  # same measurement time, received first -> kept
        ]
    )
    d = counter_deltas(main, OP)
    assert d["end_value"].to_list() == [101.0]
    assert d["delta"].to_list() == [1.0]  # 101.0 - 100.0


def test_reset_contributes_zero_and_new_series_continues() -> None:
    main = readings(
        [
            ("m1", 100.0, at(8), at(8)),
            ("m1", 100.5, at(9), at(9)),
            ("m1", 3.0, at(10), at(10)),  # device swap: counter restarts low
            ("m1", 3.75, at(11), at(11)),
        ]
    )
    d = counter_deltas(main, OP)
    # 100.5-100 = 0.5 ; 3-100.5 < 0 -> reset, 0 ; 3.75-3 = 0.75 (continues from the new value)
    assert d["delta"].to_list() == [0.5, 0.0, 0.75]
    assert d["reset"].to_list() == [False, True, False]
    assert d["gap"].to_list() == [False, False, False]
    assert d["raw_delta"].to_list() == [0.5, -97.5, 0.75]


def test_impossible_jump_is_a_gap_not_usage() -> None:
    main = readings(
        [
            ("m1", 100.0, at(8), at(8)),
            ("m1", 101.0, at(9), at(9)),
            ("m1", 600.0, at(10), at(10)),  # +499 h in 1 h: offset edit
            ("m1", 600.5, at(11), at(11)),
        ]
    )
    d = counter_deltas(main, OP)
    # 1.0 ; 499 > 1.0 * 1 h + 1/60 -> gap, 0 ; 0.5
    assert d["delta"].to_list() == [1.0, 0.0, 0.5]
    assert d["gap"].to_list() == [False, True, False]
    assert d["reset"].to_list() == [False, False, False]


def test_long_silence_with_plausible_increase_is_kept() -> None:
    main = readings([("m1", 100.0, at(8, day=1), at(8)), ("m1", 110.0, at(8, day=3), at(8, 3))])
    d = counter_deltas(main, OP)
    # 10 h over 48 h: rate 0.21 <= 1 -> usage, whatever the silence
    assert d["delta"].to_list() == [10.0]
    assert d["elapsed_hours"].to_list() == pytest.approx([48.0])
    assert not d["gap"][0]


def test_minute_quantisation_tolerance_and_small_dip() -> None:
    half_minute = 0.5 / 60
    main = readings(
        [
            ("m1", 100.0, at(8), at(8)),
            # +1 minute tick 30 s later: rate 2 h/h, but within the 1-minute tolerance
            ("m1", 100.0 + 1 / 60, at(8 + half_minute), at(9)),
            # dips 0.01 h (< 1 minute): quantisation noise, not a reset
            ("m1", 100.0 + 1 / 60 - 0.01, at(9), at(9)),
            # +0.1 h in 30 s: 0.1 > 1 * (1/120) + 1/60 -> gap
            ("m1", 100.0 + 1 / 60 - 0.01 + 0.1, at(9 + half_minute), at(10)),
        ]
    )
    d = counter_deltas(main, OP)
    assert d["reset"].to_list() == [False, False, False]
    assert d["gap"].to_list() == [False, False, True]
    assert d["delta"].to_list() == pytest.approx([1 / 60, 0.0, 0.0])


def test_fuel_uses_its_own_default_rate_and_max_rate_is_configurable() -> None:
    fuel = "EngineTotalFuelUsed"
    main = readings(
        [
            ("m1", 1000.0, at(8), at(8)),
            ("m1", 1100.0, at(9), at(9)),  # 100 l/h: plausible
            ("m1", 1500.0, at(10), at(10)),  # 400 l/h > 250 l/h + 0.5 l
        ],
        counter=fuel,
    )
    assert counter_deltas(main, fuel)["gap"].to_list() == [False, True]
    assert counter_deltas(main, fuel, max_rate=500.0)["delta"].to_list() == [100.0, 400.0]
    assert counter_deltas(main, fuel, max_rate=math.inf)["gap"].to_list() == [False, False]


def test_lazy_in_lazy_out_and_missing_column_error() -> None:
    main = readings([("m1", 1.0, at(8), at(8)), ("m1", 2.0, at(9), at(9))])
    lazy = counter_deltas(main.lazy(), OP)
    assert isinstance(lazy, pl.LazyFrame)
    assert lazy.collect().equals(counter_deltas(main, OP))
    with pytest.raises(KeyError):
        counter_deltas(main, "CumulativeIdleHours")


def test_receipt_time_is_optional() -> None:
    main = readings([("m1", 1.0, at(8), at(8)), ("m1", 2.0, at(9), at(9))]).drop("kafka_timestamp")
    d = counter_deltas(main, OP)
    assert d["delta"].to_list() == [1.0]
    assert d["received"].to_list() == [None]


def _deltas(rows: list[tuple[float, float, float]]) -> pl.DataFrame:
    """(start hour, end hour, value delta) on 2024-01-01, one machine, valid intervals."""
    return counter_deltas(
        readings(
            [("m1", 0.0, at(rows[0][0]), at(0))]
            + [
                ("m1", sum(r[2] for r in rows[: i + 1]), at(r[1]), at(0))
                for i, r in enumerate(rows)
            ]
        ),
        OP,
    )


def test_allocate_spread_is_proportional_to_overlap() -> None:
    # 09:30 -> 11:00, +0.9 h; 11:00 -> 12:00, +0.5 h (ends exactly on a boundary)
    d = _deltas([(9.5, 11.0, 0.9), (11.0, 12.0, 0.5)])
    a = allocate(d, "1h")
    assert a["bucket_start"].to_list() == [at(9), at(10), at(11)]
    # 09:00 bucket: 0.9 * 0.5/1.5 = 0.3 ; 10:00: 0.9 * 1/1.5 = 0.6 ; 11:00: 0.5 (12:00 gets nothing)
    assert a["delta"].to_list() == pytest.approx([0.3, 0.6, 0.5])
    assert a["covered_hours"].to_list() == pytest.approx([0.5, 1.0, 1.0])
    assert a["bucket_end"].to_list() == [at(10), at(11), at(12)]


def test_allocate_end_credits_the_bucket_holding_the_end_reading() -> None:
    d = _deltas([(9.5, 11.0, 0.9), (11.0, 12.0, 0.5)])
    a = allocate(d, "1h", how="end")
    # the 11:00 reading lives in [11:00, 12:00): the whole 0.9 goes there; the 12:00 reading's
    # 0.5 goes to [12:00, 13:00)
    assert a["bucket_start"].to_list() == [at(11), at(12)]
    assert a["delta"].to_list() == pytest.approx([0.9, 0.5])
    assert a["covered_hours"].to_list() == pytest.approx([1.5, 1.0])


def test_allocate_flags_and_coverage_of_reset_and_gap_intervals() -> None:
    main = readings(
        [
            ("m1", 10.0, at(8), at(8)),
            ("m1", 2.0, at(9), at(9)),  # reset
            ("m1", 2.5, at(10), at(10)),
            ("m1", 900.0, at(11), at(11)),  # jump
        ]
    )
    a = allocate(counter_deltas(main, OP), "1h")
    # spread: 08 <- reset interval (0 h, not covered), 09 <- 0.5 h valid, 10 <- gap interval
    assert a["delta"].to_list() == [0.0, 0.5, 0.0]
    assert a["covered_hours"].to_list() == pytest.approx([0.0, 1.0, 0.0])
    assert a["resets"].to_list() == [1, 0, 0]
    assert a["gaps"].to_list() == [0, 0, 1]


def test_allocate_daily_in_local_time_across_dst() -> None:
    # 2024-03-30 12:00 CET (11:00 UTC) -> 2024-04-01 12:00 CEST (10:00 UTC): 47 h, +47 h
    start = datetime(2024, 3, 30, 11, tzinfo=UTC)
    end = datetime(2024, 4, 1, 10, tzinfo=UTC)
    main = readings([("m1", 0.0, start, start), ("m1", 47.0, end, end)])
    a = allocate(counter_deltas(main, OP), "1d", tz="Europe/Copenhagen")
    local_days = a["bucket_start"].dt.date().to_list()
    assert [str(x) for x in local_days] == ["2024-03-30", "2024-03-31", "2024-04-01"]
    # 30th: 12:00-24:00 = 12 h; 31st is a 23-hour day; 1st: 00:00-12:00 = 12 h
    assert a["delta"].to_list() == pytest.approx([12.0, 23.0, 12.0])
    lengths = (a["bucket_end"] - a["bucket_start"]).dt.total_hours().to_list()
    assert lengths == [24, 23, 24]


def test_allocate_lazy_and_timedelta_every() -> None:
    d = _deltas([(9.5, 11.0, 0.9)])
    eager = allocate(d, timedelta(minutes=30))
    lazy = allocate(d.lazy(), "30m")
    assert isinstance(lazy, pl.LazyFrame)
    assert lazy.collect().equals(eager)
    # three half-hour buckets, 0.3 h each
    assert eager["delta"].to_list() == pytest.approx([0.3, 0.3, 0.3])


def test_duration_string() -> None:
    assert duration_string("1h") == "1h"
    assert duration_string(timedelta(minutes=15)) == "900000000us"
    with pytest.raises(ValueError, match="positive"):
        duration_string(timedelta(0))
    with pytest.raises(ValueError, match="positive"):
        duration_string("-1h")
    with pytest.raises(ValueError, match="how"):
        allocate(_deltas([(9.0, 10.0, 1.0)]), "1h", how="middle")  # type: ignore[call-overload]
