"""Feature immutability against the real sandbox (issue 12).

For random cut times T, every closed row (``cutoff_time <= T``) of a feature table built from
``conn.window(start, T)`` equals, every feature and null for null, the same row built from
``conn.window(start, T + 24 h)``; the same for cutoff rows at random times before T. The
windows go through the real Kafka path, so a record the window plan loses or adds shows up
here too. The sandbox's late share (a few records minutes to hours late) is checked first so
the test cannot pass on a stream without late data.
"""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from tu_analytics.features import FeatureTable, feature_table

LATENCY = timedelta(minutes=15)
KEYS = ["MachineId", "bucket_start"]


def _window(conn, start: datetime, end: datetime):  # type: ignore[no-untyped-def]
    return conn.window(start, end, progress=False, max_records=None)


def _closed(t: FeatureTable, cut: datetime) -> pl.DataFrame:
    assert isinstance(t.frame, pl.DataFrame)
    return t.frame.filter(pl.col("cutoff_time") <= cut).sort(KEYS)


def _table(win, **kw) -> FeatureTable:  # type: ignore[no-untyped-def]
    return feature_table(win.main, fault_codes=win.fault_codes, **kw)


@pytest.fixture(scope="module")
def span(sandbox) -> tuple[datetime, datetime]:  # type: ignore[no-untyped-def]
    """[start, end): the backfilled days, ending a little in the past (settled)."""
    time.sleep(3)
    end = datetime.now(UTC) - timedelta(seconds=2)
    return end - timedelta(days=3), end


def test_the_sandbox_stream_has_late_records(sandbox, span) -> None:  # type: ignore[no-untyped-def]
    win = _window(sandbox.connect(), *span)
    late = win.main.filter(pl.col("kafka_timestamp") - pl.col("Location_datetime") > LATENCY).height
    assert win.main.height > 1000
    assert late > 0


def test_closed_rows_equal_after_24_more_hours(sandbox, span) -> None:  # type: ignore[no-untyped-def]
    conn = sandbox.connect()
    start, end = span
    rng = random.Random(20261130)
    lo, hi = start + timedelta(hours=6), end - timedelta(hours=24)
    compared = 0
    for _ in range(3):
        cut = lo + timedelta(seconds=rng.randrange(int((hi - lo).total_seconds())))
        short = _closed(_table(_window(conn, start, cut), allowed_latency=LATENCY), cut)
        long_win = _window(conn, start, cut + timedelta(hours=24))
        long = _closed(_table(long_win, allowed_latency=LATENCY), cut)
        assert short.height > 0
        assert_frame_equal(short, long, check_exact=True)
        compared += short.height
    assert compared > 100


def test_cutoff_rows_equal_after_24_more_hours(sandbox, span) -> None:  # type: ignore[no-untyped-def]
    conn = sandbox.connect()
    start, _ = span
    rng = random.Random(7)
    cut = start + timedelta(hours=30)
    short_win = _window(conn, start, cut)
    machines = short_win.main["MachineId"].unique().sort().to_list()
    times = [cut - timedelta(seconds=rng.randrange(20 * 3600)) for _ in range(6)]
    cutoffs = pl.DataFrame(
        {"MachineId": [rng.choice(machines) for _ in times], "cutoff_time": times}
    ).with_columns(pl.col("cutoff_time").cast(pl.Datetime("ms", "UTC")))
    short = _table(short_win, cutoffs=cutoffs).frame
    long = _table(_window(conn, start, cut + timedelta(hours=24)), cutoffs=cutoffs).frame
    assert isinstance(short, pl.DataFrame)
    assert short.height == 6
    assert_frame_equal(short, long, check_exact=True)
