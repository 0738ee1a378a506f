"""The feature table over an archive: ``scan_archive``'s LazyFrame built machine group by
machine group equals the whole-frame table, and both equal the table of the frame that was
archived (the archive round trip changes no feature)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
from polars.testing import assert_frame_equal

import tu_analytics as tu
from tu_analytics._decode import ERRORS_SCHEMA
from tu_analytics.archive import _layout as L
from tu_analytics.archive._store import Store, with_added
from tu_analytics.counters import TIME
from tu_analytics.features import feature_table

START = datetime(2024, 3, 4, tzinfo=UTC)
SCHEMA: dict[str, pl.DataType] = {
    "partition": pl.Int32(), "offset": pl.Int64(), "kafka_timestamp": TIME,
    "schema_id": pl.Int32(), "MachineId": pl.String(), "EquipmentID": pl.String(),
    "CumulativeOperatingHours": pl.Float64(), "CumulativeOperatingHours_datetime": TIME,
    "BatteryPotential": pl.Float64(), "BatteryPotential_datetime": TIME,
    "Latitude": pl.Float64(), "Longitude": pl.Float64(), "Location_datetime": TIME,
}


def _records(seed: int, machines: int = 5, days: int = 3) -> pl.DataFrame:
    """Readings every ~20 min over ``days``; a tenth arrive 2-6 h late."""
    r = random.Random(seed)
    rows = []
    for i in range(machines):
        hours = r.uniform(100, 5000)
        t = START
        while t < START + timedelta(days=days):
            t += timedelta(minutes=r.uniform(5, 35))
            hours += r.uniform(0, 0.3)
            late = timedelta(hours=r.uniform(2, 6)) if r.random() < 0.1 else timedelta(0)
            rows.append({
                "kafka_timestamp": t + timedelta(seconds=r.uniform(1, 30)) + late,
                "MachineId": f"m{i}", "EquipmentID": f"EX-{i}",
                "CumulativeOperatingHours": hours, "CumulativeOperatingHours_datetime": t,
                "BatteryPotential": r.gauss(26, 1) if r.random() < 0.6 else None,
                "BatteryPotential_datetime": t,
                "Latitude": 55 + i + r.gauss(0, 0.001), "Longitude": 10 + r.gauss(0, 0.001),
                "Location_datetime": t,
            })
    df = pl.DataFrame(rows).sort("kafka_timestamp").with_row_index("offset")
    return df.with_columns(pl.lit(0).alias("partition"), pl.lit(1).alias("schema_id")).select(
        [pl.col(c).cast(t) for c, t in SCHEMA.items()])


def _faults(main: pl.DataFrame) -> pl.DataFrame:
    picked = main.gather_every(40)
    return picked.select(
        "partition", "offset", "kafka_timestamp", "schema_id", "MachineId",
        pl.lit("100-2").alias("CodeIdentifier"), pl.lit("High").alias("CodeSeverity"),
        pl.col("CumulativeOperatingHours_datetime").alias("datetime"),
        pl.lit(None, dtype=TIME).alias("datetimeCleared"))


def _archive(uri: str, main: pl.DataFrame, faults: pl.DataFrame) -> None:
    store = Store.create_or_open(uri, "t", "insights", {
        L.MAIN: main.clear(), "fault_codes": faults.clear(),
        L.ERRORS: pl.DataFrame(schema=ERRORS_SCHEMA)})
    half = main.height // 2  # two commits: several files per day
    store.commit({L.MAIN: with_added(main.head(half), "kafka"),
                  "fault_codes": with_added(faults.filter(pl.col("offset") < half), "kafka")},
                 {0: None}, {0: half})
    store.commit({L.MAIN: with_added(main.slice(half), "kafka"),
                  "fault_codes": with_added(faults.filter(pl.col("offset") >= half), "kafka")},
                 {0: half}, {0: main.height})


def test_grouped_scan_archive_equals_the_whole_frame_and_the_archived_frame(
        tmp_path: Path) -> None:
    main = _records(3)
    faults = _faults(main)
    uri = str(tmp_path / "arch")
    _archive(uri, main, faults)
    end = START + timedelta(days=3, hours=8)

    def build(source: pl.DataFrame | pl.LazyFrame, fc: pl.DataFrame | pl.LazyFrame,
              group_size: int | None = None) -> pl.DataFrame:
        t = feature_table(source, every="1h", fault_codes=fc, allowed_latency="15m", end=end,
                          group_size=group_size)
        assert isinstance(t.frame, pl.DataFrame)
        return t.frame

    whole = build(tu.scan_archive(uri), tu.scan_archive(uri, table="fault_codes"))
    assert whole.height == 5 * (3 * 24 + 8)
    assert whole["fault_count"].sum() > 0
    assert whole["operating_hours"].drop_nulls().len() > 0
    for size in (1, 2):
        grouped = build(tu.scan_archive(uri), tu.scan_archive(uri, table="fault_codes"), size)
        assert_frame_equal(grouped, whole, check_exact=True)
    assert_frame_equal(build(main, faults), whole, check_exact=True)
