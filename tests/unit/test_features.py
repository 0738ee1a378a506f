"""Feature table, dictionary, Parquet round trip, labels and point-in-time (leakage) tests.

Frames are built by hand with the docs/frames.md columns; expected numbers are worked out in
the comments. The leakage tests perturb everything measured or received after a bucket's
cut-off (by hand, then randomly over seeded datasets) and demand bit-identical features for
every bucket up to it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from tu_analytics.counters import TIME
from tu_analytics.features import (
    FeatureTable,
    fault_within,
    feature_dictionary,
    feature_table,
    future_target,
)
from tu_analytics.features.dictionary import AS_OF_RULES, FEATURE_NAMES, SEMANTICS_VERSION
from tu_analytics.features.table import geohash_code, geohash_string

#: insight -> dtype of its value; each also has ``{insight}_datetime``.
INSIGHTS: dict[str, pl.DataType] = {
    "CumulativeOperatingHours": pl.Float64(),
    "CumulativeIdleHours": pl.Float64(),
    "CumulativeEngineHours": pl.Float64(),
    "EngineTotalFuelUsed": pl.Float64(),
    "EngineTotalIdleFuelUsed": pl.Float64(),
    "TotalVehicleDistance": pl.Float64(),
    "BatteryPotential": pl.Float64(),
    "AfterTreatmentDieselExhaustFluidTankLevel": pl.Float64(),
    "EngineCoolantTemperature": pl.Float64(),
    "AmbientAirTemperature": pl.Float64(),
}
SHORT = {
    "op": "CumulativeOperatingHours",
    "idle": "CumulativeIdleHours",
    "engine": "CumulativeEngineHours",
    "fuel": "EngineTotalFuelUsed",
    "idle_fuel": "EngineTotalIdleFuelUsed",
    "odo": "TotalVehicleDistance",
    "battery": "BatteryPotential",
    "def": "AfterTreatmentDieselExhaustFluidTankLevel",
    "coolant": "EngineCoolantTemperature",
    "ambient": "AmbientAirTemperature",
}
SCHEMA: dict[str, pl.DataType] = {
    "partition": pl.Int32(),
    "offset": pl.Int64(),
    "kafka_timestamp": TIME,
    "MachineId": pl.String(),
    "Latitude": pl.Float64(),
    "Longitude": pl.Float64(),
    "Location_datetime": TIME,
    "City": pl.String(),
    "LocationAddress_datetime": TIME,
    **{c: t for name, t in INSIGHTS.items() for c in (name,)},
    **{f"{name}_datetime": TIME for name in INSIGHTS},
}
FAULT_SCHEMA: dict[str, pl.DataType] = {
    "partition": pl.Int32(),
    "offset": pl.Int64(),
    "kafka_timestamp": TIME,
    "MachineId": pl.String(),
    "CodeIdentifier": pl.String(),
    "CodeDescription": pl.String(),
    "CodeSeverity": pl.String(),
    "CodeSource": pl.String(),
    "datetime": TIME,
    "datetimeCleared": TIME,
}


def near(expected: list[float | None], rel: float = 1e-9) -> list[Any]:
    """Approximate list comparison that lets nulls (None) through."""
    return [None if x is None else pytest.approx(x, rel=rel, abs=1e-12) for x in expected]


def at(hour: float, day: int = 1) -> datetime:
    return datetime(2024, 1, day, tzinfo=UTC) + timedelta(hours=hour)


def hm(h: int, m: int = 0) -> datetime:
    return at(h + m / 60)


def record(machine: str, received: datetime, **fields: Any) -> dict[str, Any]:
    """``op=(value, measured)``, ..., ``pos=(lat, lon, measured)``."""
    row: dict[str, Any] = {"MachineId": machine, "kafka_timestamp": received}
    for key, value in fields.items():
        if key == "pos":
            row["Latitude"], row["Longitude"], row["Location_datetime"] = value
        else:
            name = SHORT[key]
            row[name], row[f"{name}_datetime"] = value
    return row


def main_frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    rows = [{"partition": 0, "offset": i, **r} for i, r in enumerate(rows)]
    return pl.DataFrame(rows, schema=SCHEMA)


def fault(
    machine: str,
    code: str,
    severity: str,
    raised: datetime,
    cleared: datetime | None,
    received: datetime,
) -> dict[str, Any]:
    return {
        "MachineId": machine,
        "CodeIdentifier": code,
        "CodeDescription": "test",
        "CodeSeverity": severity,
        "CodeSource": "0",
        "datetime": raised,
        "datetimeCleared": cleared,
        "kafka_timestamp": received,
    }


def fault_frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    rows = [{"partition": 0, "offset": i, **r} for i, r in enumerate(rows)]
    return pl.DataFrame(rows, schema=FAULT_SCHEMA)


# --------------------------------------------------------------------------- scenario
#
# One machine, hourly buckets 08..11 on 2024-01-01. Receipt (k) is often out of order.
#   R1 k 08:05  op 100.0 @08:00, idle 10.0, fuel 500, battery 24, pos (57.0, 10.0)     @08:00
#   R2 k 08:40  op 100.5 @08:30, fuel 505, battery 26, pos (57.0, 10.001)               @08:30
#   R3 k 09:10  op 101.0 @09:00, idle 10.25, fuel 510, battery 25                       @09:00
#   R4 k 10:30  op 100.75 @08:45, battery 30, pos (58.0, 11.0) @08:45 <- late (after 09:00)
#   R5 k 09:50  op 101.5 @09:45, idle 10.25, fuel 515, battery 27, coolant 85,
#               pos (57.0009, 10.0)                                                      @09:45
#   R6 k 10:20  op 1.0 @10:15                                          <- counter reset
#   R7 k 11:05  op 1.5 @11:00
#   R8 k 11:30  op 1.25 @10:40                                         <- late (after 11:00)
# Faults:
#   F1 100-1 sev 67   raised 08:10 (k 08:11), cleared 09:15 (clear row k 09:20)
#   F2 200-2 sev High raised 09:30 (k 09:31)
#   F3 100-1 sev 40   raised 10:05 (k 10:06)   same code, new occurrence
#   F4 300-3 sev 90   raised 08:45, first received 10:10  <- late


def scenario() -> tuple[pl.DataFrame, pl.DataFrame]:
    main = main_frame(
        [
            record(
                "m1",
                hm(8, 5),
                op=(100.0, hm(8)),
                idle=(10.0, hm(8)),
                fuel=(500.0, hm(8)),
                battery=(24.0, hm(8)),
                pos=(57.0, 10.0, hm(8)),
            ),
            record(
                "m1",
                hm(8, 40),
                op=(100.5, hm(8, 30)),
                fuel=(505.0, hm(8, 30)),
                battery=(26.0, hm(8, 30)),
                pos=(57.0, 10.001, hm(8, 30)),
            ),
            record(
                "m1",
                hm(9, 10),
                op=(101.0, hm(9)),
                idle=(10.25, hm(9)),
                fuel=(510.0, hm(9)),
                battery=(25.0, hm(9)),
            ),
            record(
                "m1",
                hm(10, 30),
                op=(100.75, hm(8, 45)),
                battery=(30.0, hm(8, 45)),
                pos=(58.0, 11.0, hm(8, 45)),
            ),
            record(
                "m1",
                hm(9, 50),
                op=(101.5, hm(9, 45)),
                idle=(10.25, hm(9, 45)),
                fuel=(515.0, hm(9, 45)),
                battery=(27.0, hm(9, 45)),
                coolant=(85.0, hm(9, 45)),
                pos=(57.0009, 10.0, hm(9, 45)),
            ),
            record("m1", hm(10, 20), op=(1.0, hm(10, 15))),
            record("m1", hm(11, 5), op=(1.5, hm(11))),
            record("m1", hm(11, 30), op=(1.25, hm(10, 40))),
        ]
    )
    faults = fault_frame(
        [
            fault("m1", "100-1", "67", hm(8, 10), None, hm(8, 11)),
            fault("m1", "100-1", "67", hm(8, 10), hm(9, 15), hm(9, 20)),
            fault("m1", "200-2", "High", hm(9, 30), None, hm(9, 31)),
            fault("m1", "100-1", "40", hm(10, 5), None, hm(10, 6)),
            fault("m1", "300-3", "90", hm(8, 45), None, hm(10, 10)),
        ]
    )
    return main, faults


def eager(table: FeatureTable) -> pl.DataFrame:
    assert isinstance(table.frame, pl.DataFrame)
    return table.frame


def col(table: FeatureTable, name: str) -> list[Any]:
    return eager(table).get_column(name).to_list()


@pytest.fixture(scope="module")
def hourly() -> FeatureTable:
    main, faults = scenario()
    return feature_table(main, every="1h", fault_codes=faults)


def test_grid_and_keys(hourly: FeatureTable) -> None:
    assert col(hourly, "MachineId") == ["m1"] * 4
    assert col(hourly, "bucket_start") == [hm(8), hm(9), hm(10), hm(11)]
    assert col(hourly, "bucket_end") == [hm(9), hm(10), hm(11), hm(12)]
    assert col(hourly, "bucket_hours") == pytest.approx([1.0] * 4)


def test_counter_features(hourly: FeatureTable) -> None:
    # On-time op readings: 08:00 100, 08:30 100.5, 09:00 101, 09:45 101.5, 10:15 1.0, 11:00 1.5
    # (08:45 arrived 10:30 and 10:40 arrived 11:30: both after their bucket's end -> unused).
    # 08: 100.5-100 = 0.5 | 09: (101-100.5) + (101.5-101) = 1.0 | 10: only the reset -> unknown
    # | 11: 1.5-1.0 = 0.5
    assert col(hourly, "operating_hours") == pytest.approx([0.5, 1.0, None, 0.5])
    assert col(hourly, "operating_ratio") == pytest.approx([0.5, 1.0, None, 0.5])
    assert col(hourly, "counter_resets") == [0, 0, 1, 0]
    assert col(hourly, "counter_gaps") == [0, 0, 0, 0]
    # idle: 08:00 10, 09:00 10.25, 09:45 10.25 -> 09: 0.25 + 0; 08 has no interval yet
    assert col(hourly, "idle_hours") == pytest.approx([None, 0.25, None, None])
    assert col(hourly, "idle_ratio") == pytest.approx([None, 0.25, None, None])
    assert col(hourly, "engine_hours") == [None] * 4
    # fuel: 500 -> 505 (08) ; 505 -> 510 -> 515 (09) ; rate = litres / operating hours
    assert col(hourly, "fuel_used_l") == pytest.approx([5.0, 10.0, None, None])
    assert col(hourly, "fuel_rate_lph") == pytest.approx([10.0, 10.0, None, None])


def test_distance_and_location_features(hourly: FeatureTable) -> None:
    # No odometer -> GPS path. 08: (57, 10) -> (57, 10.001): 0.001 deg of longitude at 57 N =
    # 111.195 km * 0.001 * cos(57 deg) = 60.56 m. 09: (57, 10.001) -> (57.0009, 10):
    # sqrt(60.56^2 + (0.0009 * 111195)^2) = sqrt(60.56^2 + 100.08^2) = 116.97 m
    assert col(hourly, "distance_km") == near([0.06056, 0.11697, None, None], rel=2e-3)
    assert col(hourly, "distance_source") == ["gps", "gps", None, None]
    # latest known position; the late (58, 11) @08:45 known from 10:00 is older than 09:45
    assert col(hourly, "latitude") == [57.0, 57.0009, 57.0009, 57.0009]
    assert col(hourly, "longitude") == [10.001, 10.0, 10.0, 10.0]
    assert col(hourly, "position_count") == [2, 1, 0, 0]
    # two points 60.56 m apart: RMS distance to their centroid = 30.28 m; one point: 0
    assert col(hourly, "dispersion_m") == near([30.28, 0.0, None, None], rel=2e-3)
    # both within 100 m of the median position
    assert col(hourly, "time_on_site") == pytest.approx([1.0, 1.0, None, None])
    # 0.001 deg apart, same 1.2 km x 0.6 km cell
    assert col(hourly, "geohash6_cells") == [1, 1, 0, 0]


def test_stat_features(hourly: FeatureTable) -> None:
    # 08: 24, 26 (the late 30 @08:45 excluded) | 09: 25, 27
    assert col(hourly, "battery_v_mean") == pytest.approx([25.0, 26.0, None, None])
    assert col(hourly, "battery_v_min") == [24.0, 25.0, None, None]
    assert col(hourly, "battery_v_max") == [26.0, 27.0, None, None]
    assert col(hourly, "battery_v_last") == [26.0, 27.0, None, None]
    assert col(hourly, "coolant_temp_c_mean") == [None, 85.0, None, None]
    assert col(hourly, "coolant_temp_c_last") == [None, 85.0, None, None]
    assert col(hourly, "def_level_pct_max") == [None] * 4
    assert col(hourly, "ambient_temp_c_min") == [None] * 4


def test_data_quality_features(hourly: FeatureTable) -> None:
    # received per bucket: 08 (R1, R2), 09 (R3, R5), 10 (R4, R6), 11 (R7, R8)
    assert col(hourly, "record_count") == [2, 2, 2, 2]
    # on-time measurement times 08:00 08:30 | 09:00 09:45 | 10:15 | 11:00:
    # gaps ending in each bucket: 30 | max(30, 45) | 30 | 45
    assert col(hourly, "max_gap_minutes") == pytest.approx([30.0, 45.0, 30.0, 45.0])
    # newest measurement known at bucket end: 08:30, 09:45, 10:15 (the late 08:45 is older),
    # 11:00 -> 30, 15, 45, 60 minutes
    assert col(hourly, "staleness_minutes") == pytest.approx([30.0, 15.0, 45.0, 60.0])


def test_fault_features(hourly: FeatureTable) -> None:
    # raised and known in the bucket: F1 (08), F2 (09), F3 (10); F4 (08:45) arrived at 10:10
    assert col(hourly, "fault_count") == [1, 1, 1, 0]
    # numeric severities only: 67 | "High" -> none | 40 | -
    assert col(hourly, "fault_max_severity") == [67.0, None, 40.0, None]
    # active at end: F1 | F2 (F1 cleared 09:15, known 09:20) | F2 F3 F4 | same
    assert col(hourly, "faults_active") == [1, 1, 3, 3]
    # first known: 100-1 (08), 200-2 (09), 300-3 (10; F3 reuses 100-1)
    assert col(hourly, "fault_new_codes") == [1, 1, 1, 0]


def test_allowed_latency_admits_late_records() -> None:
    main, faults = scenario()
    table = feature_table(main, every="1h", fault_codes=faults, allowed_latency="45m")
    # 10:40 (k 11:30 <= 11:00 + 45m) is now on time: 10:15 1.0 -> 10:40 1.25 (10) -> 11:00 1.5
    # (11). 08:45 (k 10:30 > 09:00 + 45m) is still late.
    assert col(table, "operating_hours") == pytest.approx([0.5, 1.0, 0.25, 0.25])
    # 10: newest known = 10:40 -> 20 min
    assert col(table, "staleness_minutes") == pytest.approx([30.0, 15.0, 20.0, 60.0])
    # gaps: 10 -> max(10:15-09:45, 10:40-10:15) = 30 ; 11 -> 11:00-10:40 = 20
    assert col(table, "max_gap_minutes") == pytest.approx([30.0, 45.0, 30.0, 20.0])
    # F4 (08:45, k 10:10) is known by 09:00 + 45m... no: 10:10 > 09:45; by 10:00 + 45m: yes
    assert col(table, "faults_active") == [1, 2, 3, 3]
    assert table.allowed_latency == "45m"
    same = feature_table(main, every="1h", allowed_latency=timedelta(minutes=45))
    assert col(same, "operating_hours") == col(table, "operating_hours")


def test_daily_buckets() -> None:
    main, faults = scenario()
    table = feature_table(main, every="1d", fault_codes=faults)
    # every record arrives the same day, so all readings are on time: 08:00 100, 08:30 100.5,
    # 08:45 100.75, 09:00 101, 09:45 101.5, 10:15 1.0, 10:40 1.25, 11:00 1.5 ->
    # 0.5 + 0.25 + 0.25 + 0.5 + reset 0 + 0.25 + 0.25 = 2.0
    assert col(table, "operating_hours") == pytest.approx([2.0])
    assert col(table, "operating_ratio") == pytest.approx([2.0 / 24])
    assert col(table, "bucket_hours") == pytest.approx([24.0])
    assert col(table, "record_count") == [8]
    assert col(table, "fault_count") == [4]
    assert col(table, "fault_max_severity") == [90.0]
    assert col(table, "fault_new_codes") == [3]
    assert col(table, "faults_active") == [3]
    # battery 24 26 25 30 27 -> mean 26.4
    assert col(table, "battery_v_mean") == pytest.approx([26.4])


def test_odometer_wins_over_gps_and_zero_positions_are_ignored() -> None:
    main = main_frame(
        [
            record("m1", hm(8), odo=(1000.0, hm(8)), pos=(57.0, 10.0, hm(8))),
            record("m1", hm(8, 30), odo=(1002.5, hm(8, 30)), pos=(57.1, 10.0, hm(8, 30))),
            record("m1", hm(9), pos=(0.0, 0.0, hm(9))),  # altitude-only record
            record("m1", hm(9, 30), pos=(57.1, 10.0, hm(9, 30))),
        ]
    )
    table = feature_table(main)
    # 08: odometer 2.5 km (GPS would say 11 km); 09: GPS (57.1, 10) -> (57.1, 10) = 0
    assert col(table, "distance_km") == pytest.approx([2.5, 0.0])
    assert col(table, "distance_source") == ["odometer", "gps"]
    assert col(table, "position_count") == [2, 1]


def test_time_on_site_and_cells() -> None:
    main = main_frame(
        [
            record("m1", hm(8, 1), pos=(57.0, 10.0, hm(8, 1))),
            record("m1", hm(8, 2), pos=(57.0, 10.0, hm(8, 2))),
            record("m1", hm(8, 3), pos=(57.0003, 10.0, hm(8, 3))),  # 33 m north
            record("m1", hm(8, 4), pos=(57.5, 10.0, hm(8, 4))),  # 55 km north, other cell
        ]
    )
    table = feature_table(main, site_radius_m=100.0)
    # median position = (57.00015, 10.0): the first three are within 17 m, the fourth is not
    assert col(table, "time_on_site") == pytest.approx([0.75])
    assert col(table, "geohash6_cells") == [2]


def test_geohash_matches_reference() -> None:
    # the example of the geohash spec / Wikipedia: (57.64911, 10.40744) -> u4pruydqqvj
    code = pl.select(geohash_code(pl.lit(57.64911), pl.lit(10.40744), 6)).item()
    assert geohash_string(code, 6) == "u4pruy"
    code11 = pl.select(geohash_code(pl.lit(57.64911), pl.lit(10.40744), 11)).item()
    assert geohash_string(code11, 11) == "u4pruydqqvj"


def test_missing_columns_empty_input_and_lazy() -> None:
    # only a counter: every other contract column is treated as all-null
    narrow = pl.DataFrame(
        {
            "MachineId": ["m1", "m1"],
            "kafka_timestamp": [hm(8), hm(9)],
            "CumulativeOperatingHours": [1.0, 1.5],
            "CumulativeOperatingHours_datetime": [hm(8), hm(9)],
        },
        schema_overrides={"kafka_timestamp": TIME, "CumulativeOperatingHours_datetime": TIME},
    )
    table = feature_table(narrow)
    assert col(table, "operating_hours") == pytest.approx([None, 0.5])
    lazy = feature_table(narrow.lazy(), lazy=True)
    assert isinstance(lazy.frame, pl.LazyFrame)
    assert_frame_equal(eager(lazy.collect()), eager(table))
    empty = feature_table(main_frame([]))
    assert eager(empty).height == 0
    assert eager(empty).columns == eager(table).columns


def test_dictionary_documents_every_column(hourly: FeatureTable) -> None:
    d = hourly.dictionary
    assert d.columns == ["name", "unit", "definition", "as_of_rule", "as_of", "source_fields"]
    assert d["name"].to_list() == eager(hourly).columns
    assert d.filter(pl.col("definition").str.len_chars() < 10).height == 0
    # every feature states its as-of rule, and the rule text is one of the documented ones
    assert d["as_of_rule"].null_count() == 0
    assert set(d["as_of"].to_list()) <= set(AS_OF_RULES.values())
    assert eager(hourly).columns == [n for n in FEATURE_NAMES if n in eager(hourly).columns]
    without = feature_table(scenario()[0])
    assert "fault_count" not in without.dictionary["name"].to_list()
    with pytest.raises(KeyError):
        feature_dictionary(["not_a_feature"])


def test_parquet_round_trip(tmp_path: Path, hourly: FeatureTable) -> None:
    path = tmp_path / "features.parquet"
    hourly.write_parquet(path)
    back = FeatureTable.read_parquet(path)
    assert_frame_equal(eager(back), eager(hourly))
    assert_frame_equal(back.dictionary, hourly.dictionary)
    assert back.every == "1h"
    assert back.allowed_latency is None
    assert back.semantics_version == SEMANTICS_VERSION
    meta = pl.read_parquet_metadata(path)
    assert meta["tu_analytics.semantics_version"] == str(SEMANTICS_VERSION)
    plain = tmp_path / "plain.parquet"
    pl.DataFrame({"a": [1]}).write_parquet(plain)
    with pytest.raises(ValueError, match="dictionary"):
        FeatureTable.read_parquet(plain)


def test_future_target(hourly: FeatureTable) -> None:
    one = future_target(eager(hourly), "operating_hours")
    assert isinstance(one, pl.DataFrame)
    # next bucket's operating hours: 09 -> 1.0, 10 -> null (reset only), 11 -> 0.5, none after
    assert one["label_operating_hours_h1"].to_list() == pytest.approx([1.0, None, 0.5, None])
    assert one.columns[:-1] == col_names(hourly)
    two = future_target(eager(hourly), "record_count", horizon=2)
    assert two["label_record_count_h2"].to_list() == [2, 2, None, None]
    summed = future_target(hourly, "record_count", horizon=2, agg="sum")
    assert isinstance(summed, pl.DataFrame)
    # 2 + 2 for 08 and 09; the horizon runs off the table for 10 and 11
    assert summed["label_record_count_sum_h2"].to_list() == [4, 4, None, None]
    lazy = future_target(eager(hourly).lazy(), "operating_hours")
    assert isinstance(lazy, pl.LazyFrame)
    # the label is a join on time, not a row shift: drop bucket 09 and 08 has no next bucket
    gappy = eager(hourly).filter(pl.col("bucket_start") != hm(9))
    assert future_target(gappy, "operating_hours")["label_operating_hours_h1"].to_list() == [
        None,
        0.5,
        None,
    ]


def col_names(table: FeatureTable) -> list[str]:
    return eager(table).columns


def test_fault_within(hourly: FeatureTable) -> None:
    _, faults = scenario()
    out = fault_within(hourly, faults, days=0.5)
    assert isinstance(out, pl.DataFrame)
    label = out["label_fault_within_0.5d"].to_list()
    # 08 (end 09:00): F2 raised 09:30 -> True (F4 at 08:45 is before the end: not a label)
    # 09 (end 10:00): F3 at 10:05 -> True
    # 10 (end 11:00): nothing after; horizon to 23:00 runs past the data (12:00) -> unknown
    assert label == [True, True, None, None]
    # with data known to run until midnight, 10 and 11 (horizons end 23:00, 24:00) are negatives
    observed = fault_within(eager(hourly), faults, days=0.5, observed_until=at(24))
    assert observed["label_fault_within_0.5d"].to_list() == [True, True, False, False]
    # rows keep their order and features are untouched
    assert_frame_equal(out.drop("label_fault_within_0.5d"), eager(hourly))


# --------------------------------------------------------------------------- leakage


def table_upto(table: FeatureTable, end: datetime) -> pl.DataFrame:
    """Every bucket that ends at or before ``end``."""
    return eager(table).filter(pl.col("bucket_end") <= end)


def test_leakage_hand_made() -> None:
    main, faults = scenario()
    for cut in (hm(9), hm(10), hm(11)):
        base = feature_table(main, fault_codes=faults)
        later = cut + timedelta(minutes=1)
        extra = main_frame(
            [
                # measured after the cut, received before it (clock ahead)
                record(
                    "m1",
                    cut - timedelta(minutes=30),
                    op=(9999.0, later),
                    battery=(1.0, later),
                    pos=(10.0, 10.0, later),
                ),
                # measured before the cut, received after it
                record(
                    "m1",
                    later,
                    op=(100.7, hm(8, 40)),
                    battery=(99.0, hm(8, 20)),
                    coolant=(1.0, hm(8, 20)),
                    pos=(0.5, 0.5, hm(8, 20)),
                ),
                # a new machine that only shows up late
                record("m9", later, op=(1.0, hm(8)), pos=(1.0, 1.0, hm(8))),
            ]
        )
        more_faults = fault_frame(
            [
                fault("m1", "999-9", "100", hm(8, 20), None, later),
                fault("m1", "100-1", "67", hm(8, 10), hm(8, 15), later),  # earlier clear, late
                fault("m1", "888-8", "100", later, None, later),
            ]
        )
        # every record received after the cut gets different values, and every counter
        # reading measured after it a different (still plausible) one
        op = pl.col("CumulativeOperatingHours")
        changed = main.with_columns(
            pl.when(pl.col("kafka_timestamp") > cut)
            .then(pl.col("BatteryPotential") + 50)
            .otherwise(pl.col("BatteryPotential"))
            .alias("BatteryPotential"),
            pl.when(pl.col("CumulativeOperatingHours_datetime") >= cut)
            .then(op + 0.1)
            .otherwise(op)
            .alias("CumulativeOperatingHours"),
        )
        after = feature_table(
            pl.concat([changed, extra]), fault_codes=pl.concat([faults, more_faults])
        )
        assert_frame_equal(table_upto(after, cut), table_upto(base, cut), check_exact=True)


@dataclass
class Rng:
    """Seeded helpers for random datasets and perturbations."""

    r: random.Random
    start: datetime
    hours: int

    def time(self, lo: datetime | None = None, hi: datetime | None = None) -> datetime:
        lo = lo or self.start - timedelta(hours=1)
        hi = hi or self.start + timedelta(hours=self.hours + 1)
        ms = int((hi - lo).total_seconds() * 1000)
        return lo + timedelta(milliseconds=self.r.randrange(max(ms, 1)))


GROUPS = [*INSIGHTS, "pos", "addr"]
TOWNS = ["North", "South", "East"]


def random_dataset(rng: Rng) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    r = rng.r
    machines = ["a", "b", "c"]
    rows: list[dict[str, Any]] = []
    level = {m: {name: r.uniform(0, 1000) for name in INSIGHTS} for m in machines}
    for _ in range(r.randrange(40, 90)):
        m = r.choice(machines)
        t = rng.time(rng.start, rng.start + timedelta(hours=rng.hours))
        late = r.random() < 0.2
        k = t + timedelta(minutes=r.expovariate(1 / 4) + (r.uniform(30, 200) if late else 0))
        row: dict[str, Any] = {"MachineId": m, "kafka_timestamp": k}
        for name in INSIGHTS:
            if r.random() < 0.5:
                ft = t - timedelta(minutes=r.uniform(0, 20) if r.random() < 0.3 else 0)
                if r.random() < 0.05:
                    level[m][name] = r.uniform(0, 5)  # reset
                elif r.random() < 0.05:
                    level[m][name] += 5000  # jump
                else:
                    level[m][name] += r.uniform(0, 0.6)
                row[name], row[f"{name}_datetime"] = round(level[m][name], 3), ft
        if r.random() < 0.6:
            zero = r.random() < 0.05
            row["Latitude"] = 0.0 if zero else 55 + r.uniform(0, 0.01)
            row["Longitude"] = 0.0 if zero else 10 + r.uniform(0, 0.01)
            row["Location_datetime"] = t
        if r.random() < 0.3:  # a City: other machines within 1 km share it as their site
            row["City"], row["LocationAddress_datetime"] = r.choice(TOWNS), t
        rows.append(row)
        if r.random() < 0.15:  # the same record delivered again later
            rows.append({**row, "kafka_timestamp": k + timedelta(minutes=r.uniform(1, 90))})
    faults: list[dict[str, Any]] = []
    for _ in range(r.randrange(5, 15)):
        raised = rng.time(rng.start, rng.start + timedelta(hours=rng.hours))
        code, m = r.choice(["1-1", "2-2", "3-3", "4-4"]), r.choice(machines)
        sev = r.choice(["10", "50", "High", "95"])
        k = raised + timedelta(minutes=r.expovariate(1 / 10))
        faults.append(fault(m, code, sev, raised, None, k))
        if r.random() < 0.6:
            cleared = raised + timedelta(minutes=r.uniform(5, 240))
            ck = cleared + timedelta(minutes=r.expovariate(1 / 30))
            faults.append(fault(m, code, sev, raised, cleared, ck))
    return rows, faults


def random_group(rng: Rng, row: dict[str, Any], group: str, lo: datetime | None) -> None:
    """Give ``group`` of ``row`` a random value measured at or after ``lo`` (or anywhere), or
    remove it."""
    r = rng.r
    if r.random() < 0.2:
        value: Any = None
        t: datetime | None = None
    else:
        t = rng.time(lo, None) if lo else rng.time()
        value = r.uniform(-100, 10_000)
    if group == "pos":
        row["Latitude"] = None if t is None else 55 + r.uniform(-1, 1)
        row["Longitude"] = None if t is None else 10 + r.uniform(-1, 1)
        row["Location_datetime"] = t
    elif group == "addr":
        row["City"] = None if t is None else r.choice([*TOWNS, "West"])
        row["LocationAddress_datetime"] = t
    else:
        row[group], row[f"{group}_datetime"] = value, t


def group_time(row: dict[str, Any], group: str) -> datetime | None:
    name = {"pos": "Location", "addr": "LocationAddress"}.get(group, group)
    t: datetime | None = row.get(f"{name}_datetime")
    return t


def perturb(
    rng: Rng,
    rows: list[dict[str, Any]],
    faults: list[dict[str, Any]],
    end: datetime,
    cutoff: datetime,
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Change or add only what is measured at/after ``end`` or received after ``cutoff``."""
    r = rng.r
    out: list[dict[str, Any]] = []
    for original in rows:
        row = dict(original)
        if row["kafka_timestamp"] > cutoff:
            # received too late: anything about it may change (but not its lateness)
            row["kafka_timestamp"] = rng.time(cutoff + timedelta(milliseconds=1), None)
            row["MachineId"] = r.choice(["a", "b", "c", "z"])
            for group in GROUPS:
                if r.random() < 0.7:
                    random_group(rng, row, group, None)
        else:
            for group in GROUPS:
                t = group_time(row, group)
                if t is not None and t >= end and r.random() < 0.7:
                    random_group(rng, row, group, end)
        out.append(row)
    for _ in range(r.randrange(1, 6)):
        if r.random() < 0.5:  # received after the cut-off, measured any time
            row = {"MachineId": r.choice(["a", "b", "z"])}
            row["kafka_timestamp"] = rng.time(cutoff + timedelta(milliseconds=1), None)
            lo = None
        else:  # received in time but measured after the bucket's end
            row = {"MachineId": r.choice(["a", "b", "z"])}
            row["kafka_timestamp"] = rng.time(None, cutoff)
            lo = end
        for group in GROUPS:
            if r.random() < 0.5:
                random_group(rng, row, group, lo)
        out.append(row)
    out_faults: list[dict[str, Any]] = []
    for original in faults:
        f = dict(original)
        if f["kafka_timestamp"] > cutoff:
            f["datetime"] = rng.time()
            f["datetimeCleared"] = None if r.random() < 0.5 else rng.time(f["datetime"], None)
            f["CodeIdentifier"] = r.choice(["1-1", "9-9"])
            f["CodeSeverity"] = r.choice(["1", "100", "x"])
        elif f["datetime"] >= end:
            f["datetime"] = rng.time(end, None)
            f["datetimeCleared"] = None if r.random() < 0.5 else rng.time(f["datetime"], None)
            f["CodeSeverity"] = r.choice(["1", "100", "x"])
        elif f["datetimeCleared"] is not None and f["datetimeCleared"] >= end:
            f["datetimeCleared"] = None if r.random() < 0.5 else rng.time(end, None)
        out_faults.append(f)
    for _ in range(r.randrange(0, 4)):
        m, code = r.choice(["a", "b", "z"]), r.choice(["1-1", "7-7"])
        if r.random() < 0.5:
            raised = rng.time()
            k = rng.time(cutoff + timedelta(milliseconds=1), None)
        else:
            raised = rng.time(end, None)
            k = rng.time(None, cutoff)
        cleared = None if r.random() < 0.5 else rng.time(raised, None)
        out_faults.append(fault(m, code, "100", raised, cleared, k))
    return out, out_faults


@pytest.mark.parametrize("seed", range(24))
def test_leakage_randomized(seed: int) -> None:
    r = random.Random(seed)
    rng = Rng(r, at(6), hours=10)
    every = r.choice(["1h", "30m", "2h", "45m"])
    latency = r.choice([None, "20m", "1h"])
    rows, faults = random_dataset(rng)
    base = feature_table(
        main_frame(rows), every=every, fault_codes=fault_frame(faults), allowed_latency=latency
    )
    assert eager(base).height > 0
    ends = sorted(set(eager(base)["bucket_end"].to_list()))
    for end in r.sample(ends, k=min(3, len(ends))):
        cutoff = end + (pd_duration(latency) if latency else timedelta(0))
        new_rows, new_faults = perturb(rng, rows, faults, end, cutoff)
        after = feature_table(
            main_frame(new_rows),
            every=every,
            fault_codes=fault_frame(new_faults),
            allowed_latency=latency,
        )
        assert_frame_equal(table_upto(after, end), table_upto(base, end), check_exact=True)


def pd_duration(text: str) -> timedelta:
    unit = {"m": "minutes", "h": "hours"}[text[-1]]
    return timedelta(**{unit: int(text[:-1])})
