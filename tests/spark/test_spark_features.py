"""Spark's feature table equals the Polars ``feature_table`` of the same records (issue:
beyond one machine, "Features")."""

from __future__ import annotations

import time
import warnings
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest
from polars.testing import assert_frame_equal

import tu_analytics.spark as tus
from tu_analytics.features import feature_table
from tu_analytics.spark._schema import conform


@pytest.fixture(scope="module")
def conn(sandbox):
    return sandbox.connect()


def _window(conn, start, end):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return conn.window(start, end, progress=False, max_records=None)


#: Records written with a Kafka timestamp this far behind the newest are settled (the
#: sandbox moves some back by seconds to minutes).
SETTLE = timedelta(minutes=20)


@pytest.fixture(scope="module")
def span(conn) -> tuple[datetime, datetime]:
    """The busiest ≤ 6 h of the backfill that is settled (the sandbox may still be writing
    its backfill, and its fleet sleeps at night): data at any hour and weekday."""
    deadline = time.monotonic() + 900
    while True:
        now = datetime.now(UTC).replace(microsecond=0)
        stamps = _window(conn, now - timedelta(days=4), now).main["kafka_timestamp"]
        settled = stamps.max() - SETTLE  # type: ignore[operator]
        stamps = stamps.filter(stamps < settled)
        if stamps.len() >= 3000 or time.monotonic() > deadline:
            break
        time.sleep(30)
    hours = (stamps.dt.truncate("1h").value_counts(name="n").sort("kafka_timestamp")
             .with_columns(pl.col("n").rolling_sum(6, min_samples=1).alias("six")))
    best = hours.sort("six", "kafka_timestamp").row(-1, named=True)
    end = min(best["kafka_timestamp"] + timedelta(hours=1), settled)
    return end - timedelta(hours=6), end


def _same_records(spark_df, frame: pl.DataFrame) -> None:
    """Both sides read the same (partition, offset) set (the backfill may still be growing)."""
    keys = pl.from_arrow(spark_df.select("partition", "offset").toArrow())
    assert isinstance(keys, pl.DataFrame)
    assert keys.sort("partition", "offset").equals(
        frame.select("partition", "offset").sort("partition", "offset"))


def _same(spark_df, want: pl.DataFrame) -> None:
    """Every column, value for value and null for null (floats exactly)."""
    schema = want.schema
    got = conform(pl.from_arrow(spark_df.toArrow()), schema)  # type: ignore[arg-type]
    assert got.columns == want.columns
    assert got.height == want.height > 0
    keys = ["MachineId", "bucket_start"]
    assert_frame_equal(got.sort(keys), conform(want, schema).sort(keys), check_exact=True)


def test_feature_table_with_faults_equals_polars(spark, conn, span) -> None:
    start, end = span
    win = _window(conn, start, end)
    assert win.main.height > 1000
    assert win.fault_codes.height > 0
    want = feature_table(win.main, every="1h", fault_codes=win.fault_codes,
                         allowed_latency="10m", start=start + timedelta(hours=1), end=end).frame
    assert isinstance(want, pl.DataFrame)
    assert "faults_active" in want.columns
    # site comes from other machines too (a small anchors table, aggregated by Spark first)
    assert want.filter(pl.col("latitude").is_not_null())["site"].null_count() == 0
    main = tus.window(spark, conn, start, end, max_records_per_task=5000)
    faults = tus.window(spark, conn, start, end, frame="fault_codes", max_records_per_task=5000)
    _same_records(main, win.main)
    _same_records(faults, win.fault_codes)
    got = tus.feature_table(main, "1h", fault_codes=faults, allowed_latency="10m",
                            start=start + timedelta(hours=1), end=end)
    _same(got, want)


def test_feature_table_open_grid_equals_polars(spark, conn, span) -> None:
    """No ``end``: the grid ends at the last bucket with data anywhere, as in Polars; and
    a non-UTC session time zone changes nothing."""
    start, end = span
    start = end - timedelta(hours=3)
    win = _window(conn, start, end)
    want = feature_table(win.main, every="30m").frame
    assert isinstance(want, pl.DataFrame)
    spark.conf.set("spark.sql.session.timeZone", "Asia/Kolkata")  # a half-hour offset
    try:
        main = tus.window(spark, conn, start, end, max_records_per_task=5000)
        _same_records(main, win.main)
        _same(tus.feature_table(main, timedelta(minutes=30)), want)
    finally:
        spark.conf.set("spark.sql.session.timeZone", "UTC")
