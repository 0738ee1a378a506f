"""Spark windows equal Polars windows, record for record (issue: beyond one machine)."""

from __future__ import annotations

import random
import warnings
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest
from polars.testing import assert_frame_equal

import tu_analytics.spark as tus
from tu_analytics.spark._schema import conform


def _polars(conn, start, end, frame="main", machines=None) -> pl.DataFrame:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        win = conn.window(start, end, progress=False, machines=machines)
    return win.errors if frame == "errors" else getattr(win, frame)


def _spark_as_polars(df, schema: pl.Schema) -> pl.DataFrame:
    table = df.toArrow()
    return conform(pl.from_arrow(table), schema)  # type: ignore[arg-type]


def _same(spark_df, polars_df: pl.DataFrame) -> None:
    schema = polars_df.schema
    got = _spark_as_polars(spark_df, schema).sort("partition", "offset")
    want = conform(polars_df, schema).sort("partition", "offset")
    assert got.height == want.height
    assert_frame_equal(got, want)


@pytest.fixture(scope="module")
def conn(sandbox):
    return sandbox.connect()


@pytest.fixture(scope="module")
def cut(conn) -> datetime:
    """The end of the busiest 6 h of the backfill: a settled past instant, chosen from the
    data so that the test has records at any hour and weekday."""
    now = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    main = _polars(conn, now - timedelta(days=3), now)
    hours = (main.group_by(pl.col("kafka_timestamp").dt.truncate("1h").alias("h")).len()
             .sort("h").with_columns(pl.col("len").rolling_sum(6).alias("six")))
    best = hours.drop_nulls("six").sort("six", "h").row(-1, named=True)
    return best["h"] + timedelta(hours=1)


def test_window_equals_polars_across_tasks(spark, conn, cut) -> None:
    start, end = cut - timedelta(hours=6), cut
    want = _polars(conn, start, end)
    assert want.height > 1000
    per_task = max(1, want.group_by("partition").len()["len"].min() // 4)
    df = tus.window(spark, conn, start, end, max_records_per_task=per_task)
    # ≥ 4 tasks per partition
    assert df.rdd.getNumPartitions() >= 4 * want["partition"].n_unique()
    _same(df, want)
    # The plan is pinned: a second action sees the same set.
    assert df.count() == want.height


def test_random_ranges_equal_polars(spark, conn, cut) -> None:
    rng = random.Random(11)
    for _ in range(3):
        span = timedelta(minutes=rng.randint(20, 600))
        end = cut - timedelta(minutes=rng.randint(0, 2000))
        df = tus.window(spark, conn, end - span, end, max_records_per_task=2000)
        _same(df, _polars(conn, end - span, end))


def test_long_frames_and_machines(spark, conn, cut) -> None:
    start, end = cut - timedelta(days=1), cut
    main = _polars(conn, start, end)
    some = main["MachineId"].drop_nulls().unique().sort().to_list()[:3]
    df = tus.window(spark, conn, start, end, machines=some, max_records_per_task=5000)
    _same(df, _polars(conn, start, end, machines=some))
    for frame in ("fault_codes", "can_messages"):
        long = tus.window(spark, conn, start, end, frame=frame, max_records_per_task=5000)
        want = _polars(conn, start, end, frame=frame)
        got = _spark_as_polars(long, want.schema)
        assert got.height == want.height
        assert_frame_equal(got.sort(got.columns), conform(want, want.schema).sort(want.columns))


def test_session_time_zone_does_not_shift_values(spark, conn, cut) -> None:
    start, end = cut - timedelta(hours=2), cut
    spark.conf.set("spark.sql.session.timeZone", "America/Chicago")
    try:
        df = tus.window(spark, conn, start, end, max_records_per_task=1000)
        _same(df, _polars(conn, start, end))
    finally:
        spark.conf.set("spark.sql.session.timeZone", "UTC")


def test_format_option_load(spark, sandbox, cut) -> None:
    env = sandbox.env()
    tus.register(spark)
    opts = {k: env[v] for k, v in {
        "bootstrap_servers": "TU_BOOTSTRAP_SERVERS", "sasl_username": "TU_SASL_USERNAME",
        "sasl_password": "TU_SASL_PASSWORD", "topic": "TU_TOPIC",
        "schema_registry_url": "TU_SCHEMA_REGISTRY_URL",
        "schema_registry_username": "TU_SCHEMA_REGISTRY_USERNAME",
        "schema_registry_password": "TU_SCHEMA_REGISTRY_PASSWORD",
        "security_protocol": "TU_SECURITY_PROTOCOL"}.items()}
    start, end = cut - timedelta(hours=1), cut
    df = (spark.read.format("trackunit").options(**opts, start=start.isoformat(),
                                                   end=end.isoformat()).load())
    want = _polars(sandbox.connect(), start, end)
    _same(df, want)
    text = df._jdf.queryExecution().toString()
    df.explain(True)
    for secret in (opts["sasl_password"], opts["schema_registry_password"]):
        assert secret not in text
