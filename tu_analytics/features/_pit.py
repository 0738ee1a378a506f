"""Point-in-time primitives of the feature table: the rules, the bucket clock, readings.

Part of :mod:`tu_analytics.features.table`, whose docstring states the rule these implement:
a reading joins a bucket only once measured before its end and received by its cut-off.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta

import polars as pl

from tu_analytics.counters import TIME, duration_string

KEYS = ("MachineId", "bucket_start")
_M = "MachineId"
_B = "bucket_start"
#: Reciprocals, not divisors: see ``tu_analytics.counters.HOURS_PER_MS``.
_MINUTES_PER_MS = 1.0 / 60_000.0


@dataclass(frozen=True)
class _Rules:
    """The two point-in-time rules, as switches for the mutation tests only (a test that turns
    one off must see the leakage tests fail). Never turn them off in real use."""

    #: Use a reading only if received by its bucket's cut-off (end + allowed_latency).
    latency: bool = True
    #: Never use a counter reading measured after a bucket to allocate usage inside it.
    boundary: bool = True


@dataclass(frozen=True)
class _Clock:
    """Bucket arithmetic for one ``every`` and ``allowed_latency``."""

    step: str
    latency: str | None
    rules: _Rules = _Rules()

    def bucket(self, t: pl.Expr) -> pl.Expr:
        return t.dt.truncate(self.step)

    def receipt_bucket(self, k: pl.Expr) -> pl.Expr:
        # First bucket t with k <= end(t) + L: the bucket holding (k - L - 1 ms).
        shifted = k.dt.offset_by(f"-{self.latency}") if self.latency else k
        return shifted.dt.offset_by("-1ms").dt.truncate(self.step)

    def available(self, t: pl.Expr, k: pl.Expr) -> pl.Expr:
        if not self.rules.latency:
            return self.bucket(t)
        return pl.max_horizontal(self.bucket(t), self.receipt_bucket(k))

    def on_time(self, t: pl.Expr, k: pl.Expr) -> pl.Expr:
        if not self.rules.latency:
            return t.is_not_null()
        return self.receipt_bucket(k) <= self.bucket(t)

    def cutoff(self, bucket_end: pl.Expr) -> pl.Expr:
        return bucket_end.dt.offset_by(self.latency) if self.latency else bucket_end


def _latency_string(allowed_latency: str | timedelta | None) -> str | None:
    if allowed_latency is None:
        return None
    if isinstance(allowed_latency, timedelta):
        return None if allowed_latency == timedelta(0) else duration_string(allowed_latency)
    text = allowed_latency.strip()
    if text in ("", "0"):
        return None
    return duration_string(text)


def _ensure(lf: pl.LazyFrame, columns: Mapping[str, pl.DataType]) -> pl.LazyFrame:
    """Add missing contract columns as typed nulls (every field is optional) and normalise
    time columns to Datetime(ms, UTC)."""
    schema = lf.collect_schema()
    exprs: list[pl.Expr] = []
    for name, dtype in columns.items():
        if name not in schema:
            exprs.append(pl.lit(None, dtype=dtype).alias(name))
        elif dtype == TIME and schema[name] != TIME:
            exprs.append(pl.col(name).cast(TIME))
    return lf.with_columns(exprs) if exprs else lf


def _ordered(col: str, by: str = "_t") -> pl.Expr:
    """A group's values as one list in measurement order, for float reductions.

    Plain ``sum()``/``mean()`` in a group-by combine partial results in an order that depends on
    how the engine split the whole frame, so a bucket's value could change in the last bit when
    unrelated rows are added. Reducing one ordered list is reproducible bit for bit, which the
    point-in-time guarantee (and its tests, which compare exactly) relies on.
    """
    return pl.col(col).sort_by(by).implode()


def _run_start(*cols: str) -> pl.Expr:
    """True on the first row of each run of equal ``cols`` in a sorted frame (dedup)."""
    return pl.any_horizontal(
        [(pl.col(c) != pl.col(c).shift(1)).fill_null(value=True) for c in cols]
    )


def _readings(
    lf: pl.LazyFrame, time_col: str, values: Mapping[str, pl.Expr], clock: _Clock
) -> pl.LazyFrame:
    """Deduplicated readings of one insight: MachineId, _t, _k, values, _b, _a.

    One reading per (machine, measurement time), the earliest received.
    """
    return (
        lf.select(
            pl.col(_M),
            pl.col(time_col).alias("_t"),
            pl.col("kafka_timestamp").alias("_k"),
            *[e.alias(n) for n, e in values.items()],
        )
        .drop_nulls([_M, "_t", *values])
        .filter(pl.all_horizontal([pl.col(n).is_finite() for n in values]))
        .sort(_M, "_t", "_k")
        .filter(_run_start(_M, "_t"))
        .with_columns(
            clock.bucket(pl.col("_t")).alias("_b"),
            clock.available(pl.col("_t"), pl.col("_k")).alias("_a"),
        )
    )
