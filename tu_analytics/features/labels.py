"""Labels for supervised learning, joined to a feature table without leakage.

A label for bucket ``t`` describes what happens *after* ``t``'s end; features of ``t``
describe what was known by then (see :mod:`tu_analytics.features.table`). Labels may use
hindsight (all data, however late it arrived): they are targets, never inputs.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal, overload

import polars as pl

from tu_analytics.counters import TIME
from tu_analytics.features.table import FeatureTable

__all__ = ["fault_within", "future_target"]

_M = "MachineId"
Features = FeatureTable | pl.DataFrame | pl.LazyFrame


def _frame(features: Features) -> tuple[pl.LazyFrame, bool]:
    frame = features.frame if isinstance(features, FeatureTable) else features
    return frame.lazy(), isinstance(frame, pl.DataFrame)


def _check(lf: pl.LazyFrame, needed: tuple[str, ...]) -> None:
    names = lf.collect_schema().names()
    missing = [c for c in needed if c not in names]
    if missing:
        raise KeyError(f"features lack column(s) {missing}")


@overload
def future_target(
    features: pl.DataFrame,
    target: str = ...,
    horizon: int = ...,
    *,
    agg: Literal["each", "sum", "mean", "max"] = ...,
) -> pl.DataFrame: ...


@overload
def future_target(
    features: pl.LazyFrame,
    target: str = ...,
    horizon: int = ...,
    *,
    agg: Literal["each", "sum", "mean", "max"] = ...,
) -> pl.LazyFrame: ...


@overload
def future_target(
    features: FeatureTable,
    target: str = ...,
    horizon: int = ...,
    *,
    agg: Literal["each", "sum", "mean", "max"] = ...,
) -> pl.DataFrame | pl.LazyFrame: ...


def future_target(
    features: Features,
    target: str = "operating_hours",
    horizon: int = 1,
    *,
    agg: Literal["each", "sum", "mean", "max"] = "each",
) -> pl.DataFrame | pl.LazyFrame:
    """The feature frame plus the value of ``target`` in the next ``horizon`` buckets.

    The bucket after ``t`` is the row of the same machine whose ``bucket_start`` equals
    ``t``'s ``bucket_end`` (a join on time, not a row shift, so filtered or gappy frames stay
    right). ``agg="each"`` adds ``label_{target}_h1`` … ``label_{target}_h{horizon}``;
    ``"sum"``/``"mean"``/``"max"`` add one ``label_{target}_{agg}_h{horizon}``, null unless all
    ``horizon`` buckets are present and non-null. A label is null where the future bucket is
    outside the table (right-censored): drop those rows before training.

    No leakage: bucket ``t+h``'s value comes from its own point-in-time computation, i.e. from
    readings measured in ``t+h``. For counter targets (hours, fuel) the increase is measured
    from the last reading known before ``t+h`` (the base value, already known at ``t``'s end)
    to the last one in ``t+h``: usage accrued after the base reading, not before it.
    Returns the same kind of frame as ``features`` holds (eager or lazy).
    """
    if horizon < 1:
        raise ValueError("horizon must be >= 1")
    if agg not in ("each", "sum", "mean", "max"):
        raise ValueError(f"unknown agg {agg!r}")
    lf, eager = _frame(features)
    _check(lf, (_M, "bucket_start", "bucket_end", target))
    lookup = lf.select(
        _M,
        pl.col("bucket_start").alias("_next_start"),
        pl.col("bucket_end").alias("_next_end"),
        pl.col(target).alias("_next_value"),
    )
    out = lf.with_columns(pl.col("bucket_end").alias("_cursor"))
    steps: list[str] = []
    for h in range(1, horizon + 1):
        name = f"label_{target}_h{h}"
        steps.append(name)
        out = (
            out.join(
                lookup,
                left_on=[_M, "_cursor"],
                right_on=[_M, "_next_start"],
                how="left",
                maintain_order="left",
            )
            .with_columns(pl.col("_next_end").alias("_cursor"), pl.col("_next_value").alias(name))
            .drop("_next_end", "_next_value")
        )
    out = out.drop("_cursor")
    if agg != "each":
        values = [pl.col(s) for s in steps]
        complete = pl.all_horizontal([v.is_not_null() for v in values])
        combined = {
            "sum": pl.sum_horizontal(values),
            "mean": pl.mean_horizontal(values),
            "max": pl.max_horizontal(values),
        }[agg]
        out = out.with_columns(
            pl.when(complete).then(combined).alias(f"label_{target}_{agg}_h{horizon}")
        ).drop(steps)
    return out.collect() if eager else out


@overload
def fault_within(
    features: pl.DataFrame,
    fault_codes: pl.DataFrame | pl.LazyFrame,
    days: float = ...,
    *,
    observed_until: datetime | None = ...,
) -> pl.DataFrame: ...


@overload
def fault_within(
    features: pl.LazyFrame,
    fault_codes: pl.DataFrame | pl.LazyFrame,
    days: float = ...,
    *,
    observed_until: datetime | None = ...,
) -> pl.LazyFrame: ...


@overload
def fault_within(
    features: FeatureTable,
    fault_codes: pl.DataFrame | pl.LazyFrame,
    days: float = ...,
    *,
    observed_until: datetime | None = ...,
) -> pl.DataFrame | pl.LazyFrame: ...


def fault_within(
    features: Features,
    fault_codes: pl.DataFrame | pl.LazyFrame,
    days: float = 7,
    *,
    observed_until: datetime | None = None,
) -> pl.DataFrame | pl.LazyFrame:
    """The feature frame plus ``label_fault_within_{days}d``: will a fault be raised soon?

    True when the machine has a fault occurrence whose ``datetime`` (raise time) lies in
    ``[bucket_end, bucket_end + days)``, i.e. strictly after everything bucket ``t`` may
    use. False when there is none and the whole horizon was observed
    (``bucket_end + days <= observed_until``); null when the horizon runs past the data
    (right-censored: absence of a fault is not yet known). ``observed_until`` defaults to the
    latest ``bucket_end`` of the features. Faults raised before ``bucket_end`` never count,
    even if still active. Returns the same kind of frame as ``features`` holds.
    """
    if days <= 0:
        raise ValueError("days must be positive")
    lf, eager = _frame(features)
    _check(lf, (_M, "bucket_end"))
    horizon = pl.duration(milliseconds=round(days * 86_400_000))
    raises = (
        fault_codes.lazy()
        .select(_M, pl.col("datetime").cast(TIME).alias("_raised"))
        .drop_nulls()
        .unique()
        .sort("_raised")
    )
    end = pl.col("bucket_end").cast(TIME)
    until = pl.lit(observed_until).cast(TIME) if observed_until is not None else end.max()
    label = f"label_fault_within_{days:g}d"
    out = (
        lf.with_row_index("_row")
        .with_columns(end.alias("_end"))
        .sort("_end")
        .join_asof(
            raises,
            left_on="_end",
            right_on="_raised",
            by=_M,
            strategy="forward",
            check_sortedness=False,
        )
        .with_columns(
            pl.when(pl.col("_raised") < pl.col("_end") + horizon)
            .then(pl.lit(value=True))
            .when(pl.col("_end") + horizon <= until)
            .then(pl.lit(value=False))
            .alias(label)
        )
        .sort("_row")
        .drop("_row", "_end", "_raised")
    )
    return out.collect() if eager else out
