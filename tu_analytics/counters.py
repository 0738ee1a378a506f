"""Deltas of cumulative counters, and their allocation to time buckets.

Cumulative counters (``CumulativeOperatingHours``, ``EngineTotalFuelUsed``,
``TotalVehicleDistance``, ...) only say something about usage through their *increase*
between two readings (Trackunit's own advice: per-period usage is the counter's increase).
This module turns the Machine Insights ``main`` frame (see ``docs/frames.md``) into those
increases, once, with one set of rules that utilisation widgets and feature sets share:

* :func:`counter_deltas` — consecutive readings per machine, in *measurement* order, with the
  delta between them and flags for resets and impossible jumps;
* :func:`allocate` — those deltas summed into time buckets, either spread pro rata over the
  buckets an interval overlaps (descriptive analytics) or credited to the bucket holding the
  interval's end (point-in-time safe, for features).

Everything is columnar Polars; nothing runs at import.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import timedelta
from typing import Literal, overload

import polars as pl

from tu_analytics.formats import TS

__all__ = [
    "DEFAULT_MAX_RATE",
    "DEFAULT_TOLERANCE",
    "HOURS_PER_MS",
    "TIME",
    "allocate",
    "counter_deltas",
    "duration_string",
]

#: The contract's time type (docs/frames.md): every time column is normalised to it. One
#: definition (``tu_analytics.formats.TS``); this name is what analytics code imports.
TIME = TS

#: Largest physically possible increase per hour of elapsed wall-clock time.
#: Hour counters cannot run faster than the clock. Fuel: the largest mining-class diesel
#: engines burn ~200 l/h, so 250 l/h is beyond any machine we expect. Distance: construction
#: machines and their trucks stay far below 150 km/h. ``TotalPowerTakeOffHours`` is in seconds.
DEFAULT_MAX_RATE: Mapping[str, float] = {
    "CumulativeOperatingHours": 1.0,
    "CumulativeIdleHours": 1.0,
    "CumulativeEngineHours": 1.0,
    "CumulativeIdleNonOperatingHours": 1.0,
    "CumulativeProductiveHours": 1.0,
    "CumulativeMovingHours": 1.0,
    "CumulativeActiveRegenerationHours": 1.0,
    "TotalPowerTakeOffHours": 3600.0,
    "EngineTotalFuelUsed": 250.0,
    "EngineTotalIdleFuelUsed": 250.0,
    "TotalVehicleDistance": 150.0,
}

#: Absolute slack (counter units) for quantisation: hour counters tick in whole minutes
#: (utilisation_notes.md §2), J1939 total fuel in 0.5 l and total distance in 0.125 km.
#: Without it two readings 30 s apart that straddle a one-minute tick would look impossible.
DEFAULT_TOLERANCE: Mapping[str, float] = {
    "EngineTotalFuelUsed": 0.5,
    "EngineTotalIdleFuelUsed": 0.5,
    "TotalVehicleDistance": 0.125,
    "TotalPowerTakeOffHours": 60.0,
}

_HOUR_TOLERANCE = 1.0 / 60.0
#: Multiply, never divide, by constants: Polars turns ``column / constant`` into a multiply by
#: the reciprocal for whole columns but divides for scalars, so the last bit of a feature could
#: depend on how the engine chunked the frame. An explicit reciprocal gives one answer.
HOURS_PER_MS = 1.0 / 3_600_000.0


def duration_string(every: str | timedelta) -> str:
    """Return ``every`` as a Polars duration string (``"1h"``, ``"1d"``, ``"900000us"``)."""
    if isinstance(every, timedelta):
        micros = every // timedelta(microseconds=1)
        if micros <= 0:
            raise ValueError(f"duration must be positive, got {every!r}")
        return f"{micros}us"
    text = every.strip()
    if not text or text.startswith("-"):
        raise ValueError(f"duration must be a positive Polars duration string, got {every!r}")
    return text


def _default_max_rate(counter: str) -> float:
    if counter in DEFAULT_MAX_RATE:
        return DEFAULT_MAX_RATE[counter]
    # Any other ``*Hours`` insight is an hour meter; unknown counters get no plausibility cap.
    return 1.0 if counter.endswith("Hours") else math.inf


def _default_tolerance(counter: str) -> float:
    if counter in DEFAULT_TOLERANCE:
        return DEFAULT_TOLERANCE[counter]
    return _HOUR_TOLERANCE if counter.endswith("Hours") else 0.0


@overload
def counter_deltas(
    main: pl.DataFrame,
    counter: str,
    *,
    max_rate: float | None = ...,
    tolerance: float | None = ...,
    by: str = ...,
) -> pl.DataFrame: ...


@overload
def counter_deltas(
    main: pl.LazyFrame,
    counter: str,
    *,
    max_rate: float | None = ...,
    tolerance: float | None = ...,
    by: str = ...,
) -> pl.LazyFrame: ...


def counter_deltas(
    main: pl.DataFrame | pl.LazyFrame,
    counter: str,
    *,
    max_rate: float | None = None,
    tolerance: float | None = None,
    by: str = "MachineId",
) -> pl.DataFrame | pl.LazyFrame:
    """Consecutive readings of one cumulative counter per machine, with the delta between them.

    Input: the Machine Insights ``main`` frame (or any frame with ``by``, ``counter``,
    ``{counter}_datetime`` and, optionally, ``kafka_timestamp``). Returns the same kind of
    frame (eager in, eager out; lazy in, lazy out) with one row per interval between two
    consecutive readings::

        by | start | end | start_value | end_value | raw_delta | elapsed_hours
           | delta | reset | gap | received

    Rules, in order:

    1. **Readings.** A reading is ``(by, {counter}_datetime, counter)``; rows where any of
       the three is null (or the value is NaN/inf) are ignored. Order is *measurement* time
       (``{counter}_datetime``), never arrival order, because records arrive out of order.
    2. **Deduplication.** Every record repeats the latest value of every insight, so the same
       reading appears many times. One reading is kept per ``(by, datetime)``: the one received
       first (smallest ``kafka_timestamp``; ties broken by the smaller value). ``received``
       of an interval is the later receipt time of its two readings: when it became knowable.
    3. **Reset.** ``raw_delta < -tolerance`` (the counter went down: device swap, offset edit,
       rollover) sets ``reset`` and contributes ``delta = 0``. The next interval starts from
       the new, lower value, so the new series simply continues.
    4. **Gap / jump.** ``raw_delta > max_rate * elapsed_hours + tolerance`` is more than the
       machine can physically have done (an hour meter cannot gain more than 1 h per hour;
       ``max_rate`` is per hour of elapsed wall-clock time), e.g. an offset added after a long
       silence. It sets ``gap`` and contributes ``delta = 0``: a jump is not usage.
    5. Otherwise ``delta = max(raw_delta, 0)`` (a dip within ``tolerance`` is read as
       quantisation noise, not a reset). A long silence with a plausible increase is *kept*:
       the machine did run that much in between; :func:`allocate` decides where it lands.

    ``max_rate`` defaults to :data:`DEFAULT_MAX_RATE` (1.0 for ``*Hours`` counters, 250 l/h
    for fuel, 150 km/h for distance; no cap for unknown counters); pass ``math.inf`` to
    disable. ``tolerance`` defaults to :data:`DEFAULT_TOLERANCE` (one minute for hour
    counters, the J1939 resolution for fuel and distance, else 0).
    """
    rate = _default_max_rate(counter) if max_rate is None else max_rate
    tol = _default_tolerance(counter) if tolerance is None else tolerance
    if rate < 0 or tol < 0:
        raise ValueError("max_rate and tolerance must be non-negative")
    eager = isinstance(main, pl.DataFrame)
    lf = main.lazy()
    names = lf.collect_schema().names()
    time_col = f"{counter}_datetime"
    missing = [c for c in (by, counter, time_col) if c not in names]
    if missing:
        raise KeyError(f"counter_deltas: frame lacks column(s) {missing}")
    received = (
        pl.col("kafka_timestamp").cast(TIME)
        if "kafka_timestamp" in names
        else pl.lit(None, dtype=TIME)
    )
    out = _intervals(_readings(lf, by, counter, received), by, rate, tol)
    return out.collect() if eager else out


def _readings(lf: pl.LazyFrame, by: str, counter: str, received: pl.Expr) -> pl.LazyFrame:
    """Rules 1–2 of :func:`counter_deltas`: ``by, _t, _v, _k``, one reading per ``(by, _t)``,
    the first received, sorted by machine and measurement time."""
    return (
        lf.select(
            pl.col(by),
            pl.col(f"{counter}_datetime").cast(TIME).alias("_t"),
            pl.col(counter).cast(pl.Float64).alias("_v"),
            received.alias("_k"),
        )
        .drop_nulls([by, "_t", "_v"])
        .filter(pl.col("_v").is_finite())
        .sort([by, "_t", "_k", "_v"], nulls_last=True)
        # First row of each (by, _t) run of the sorted frame: cheaper than unique().
        .filter(
            (pl.col(by) != pl.col(by).shift(1)).fill_null(value=True)
            | (pl.col("_t") != pl.col("_t").shift(1)).fill_null(value=True)
        )
    )


def _intervals(readings: pl.LazyFrame, by: str, rate: float, tol: float) -> pl.LazyFrame:
    """Rules 3–5 of :func:`counter_deltas`: consecutive readings paired, classified."""
    same = pl.col(by) == pl.col(by).shift(1)
    raw = pl.col("end_value") - pl.col("start_value")
    elapsed = (pl.col("end") - pl.col("start")).dt.total_milliseconds() * HOURS_PER_MS
    jump = pl.col("raw_delta") > rate * pl.col("elapsed_hours") + tol
    return (
        readings.with_columns(
            pl.when(same).then(pl.col("_t").shift(1)).alias("start"),
            pl.when(same).then(pl.col("_v").shift(1)).alias("start_value"),
            pl.when(same).then(pl.col("_k").shift(1)).alias("_k0"),
        )
        .filter(pl.col("start").is_not_null())
        .select(
            pl.col(by),
            pl.col("start"),
            pl.col("_t").alias("end"),
            pl.col("start_value"),
            pl.col("_v").alias("end_value"),
            pl.max_horizontal("_k0", "_k").alias("received"),
        )
        .with_columns(raw.alias("raw_delta"), elapsed.alias("elapsed_hours"))
        .with_columns((pl.col("raw_delta") < -tol).alias("reset"))
        .with_columns((~pl.col("reset") & jump).alias("gap"))
        .with_columns(
            pl.when(pl.col("reset") | pl.col("gap"))
            .then(0.0)
            .otherwise(pl.col("raw_delta").clip(lower_bound=0.0))
            .alias("delta")
        )
        .select(
            by,
            "start",
            "end",
            "start_value",
            "end_value",
            "raw_delta",
            "elapsed_hours",
            "delta",
            "reset",
            "gap",
            "received",
        )
    )


@overload
def allocate(
    deltas: pl.DataFrame,
    every: str | timedelta = ...,
    *,
    how: Literal["spread", "end"] = ...,
    tz: str = ...,
    by: str = ...,
    value: str = ...,
) -> pl.DataFrame: ...


@overload
def allocate(
    deltas: pl.LazyFrame,
    every: str | timedelta = ...,
    *,
    how: Literal["spread", "end"] = ...,
    tz: str = ...,
    by: str = ...,
    value: str = ...,
) -> pl.LazyFrame: ...


def allocate(
    deltas: pl.DataFrame | pl.LazyFrame,
    every: str | timedelta = "1h",
    *,
    how: Literal["spread", "end"] = "spread",
    tz: str = "UTC",
    by: str = "MachineId",
    value: str = "delta",
) -> pl.DataFrame | pl.LazyFrame:
    """Sum counter deltas (from :func:`counter_deltas`) into time buckets of length ``every``.

    Buckets are ``[bucket_start, bucket_end)`` in time zone ``tz`` (so ``"1d"`` means local
    calendar days, 23 or 25 h long on DST changes); ``every`` is any Polars duration or a
    ``timedelta``. Returns one row per ``(by, bucket_start)`` that an interval touches::

        by | bucket_start | bucket_end | {value} | covered_hours | resets | gaps

    ``how="spread"`` (default; utilisation): the delta of an interval ``(start, end]`` is
    spread over the buckets it overlaps in proportion to the overlap, i.e. the machine is
    assumed to have worked at a constant rate between two readings. This is the unbiased
    choice when nothing is known about *when* in the interval the work happened, and it keeps
    totals exact. It needs the interval's end reading, so a bucket's value can change when
    a later reading arrives: do not use it for point-in-time features.

    ``how="end"`` (features): the whole delta goes to the bucket holding the interval's end
    (the reading that revealed it). A bucket's sum then equals the counter's increase from the
    last reading before the bucket to the last reading in it, like Prometheus ``increase()``;
    it never uses a reading measured after the bucket, at the price of lumping a long
    interval's usage into one bucket (so a ratio to the bucket length can exceed 1).

    ``covered_hours`` is the interval time credited to the bucket (overlap for ``spread``,
    whole elapsed time for ``end``) counting only valid intervals: reset and gap intervals say
    nothing about usage, so a bucket covered only by them has ``covered_hours == 0`` and its
    usage should be read as unknown. ``resets`` / ``gaps`` count flagged intervals in the
    last bucket they reach.

    Boundaries: for ``spread`` an interval is ``(start, end]`` and a bucket it only touches
    at an edge gets nothing; for ``end`` the end reading belongs to the bucket
    ``[bucket_start, bucket_end)`` that holds it, so a reading exactly at 10:00 credits the
    10:00 bucket (it was not measured *before* the end of the 09:00 bucket).
    """
    if how not in ("spread", "end"):
        raise ValueError(f"how must be 'spread' or 'end', got {how!r}")
    step = duration_string(every)
    eager = isinstance(deltas, pl.DataFrame)
    lf = deltas.lazy().with_columns(
        pl.col("start").cast(TIME).dt.convert_time_zone(tz).alias("_s"),
        pl.col("end").cast(TIME).dt.convert_time_zone(tz).alias("_e"),
        (~pl.col("reset") & ~pl.col("gap")).alias("_valid"),
    )
    elapsed_ms = (pl.col("_e") - pl.col("_s")).dt.total_milliseconds()
    # An interval is (start, end]: a reading exactly on a boundary closes the earlier bucket.
    last_bucket = pl.col("_e").dt.offset_by("-1ms").dt.truncate(step)
    if how == "end":
        # Here a reading belongs to the bucket [s, e) holding it, like every other feature
        # input: a reading exactly on a boundary was not measured *before* the earlier end.
        parts = lf.with_columns(
            pl.col("_e").dt.truncate(step).alias("bucket_start"),
            pl.col(value).alias("_share"),
            pl.when(pl.col("_valid")).then(elapsed_ms).otherwise(0).alias("_cov_ms"),
            pl.lit(value=True).alias("_is_last"),
        )
    else:
        bucket_end = pl.col("bucket_start").dt.offset_by(step)
        overlap_ms = (
            pl.min_horizontal(pl.col("_e"), bucket_end)
            - pl.max_horizontal(pl.col("_s"), "bucket_start")
        ).dt.total_milliseconds()
        parts = (
            lf.with_columns(
                pl.datetime_ranges(
                    pl.col("_s").dt.truncate(step), last_bucket, interval=step
                ).alias("bucket_start"),
                last_bucket.alias("_last"),
            )
            .explode("bucket_start")
            .with_columns(
                (pl.col(value) * overlap_ms / elapsed_ms).alias("_share"),
                pl.when(pl.col("_valid")).then(overlap_ms).otherwise(0).alias("_cov_ms"),
                (pl.col("bucket_start") == pl.col("_last")).alias("_is_last"),
            )
        )
    out = (
        parts.group_by(by, "bucket_start")
        .agg(
            # One ordered list per bucket: a plain group-by sum combines partial sums in an
            # engine-dependent order, so the last bit could change when unrelated rows are
            # added; features must be reproducible bit for bit.
            pl.col("_share").sort_by("end").implode().list.sum().alias(value),
            (pl.col("_cov_ms").sum() * HOURS_PER_MS).alias("covered_hours"),
            (pl.col("reset") & pl.col("_is_last")).sum().cast(pl.UInt32).alias("resets"),
            (pl.col("gap") & pl.col("_is_last")).sum().cast(pl.UInt32).alias("gaps"),
        )
        .with_columns(pl.col("bucket_start").dt.offset_by(step).alias("bucket_end"))
        .select(by, "bucket_start", "bucket_end", value, "covered_hours", "resets", "gaps")
        .sort(by, "bucket_start")
    )
    return out.collect() if eager else out
