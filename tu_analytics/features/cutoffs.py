"""Feature rows at arbitrary per-machine cutoff times (Featuretools' ``cutoff_time``).

A cutoff row ``(MachineId, cutoff_time)`` is the feature row of the window
``[cutoff_time - every, cutoff_time)`` built from data *received by* ``cutoff_time``: exactly a
bucket row whose bucket ends at ``cutoff_time``, with ``allowed_latency = 0``. Bucket rows are
point in time (a row depends on nothing measured after its end or received after its cut-off),
so one table over all the data, on a grid shifted so that a bucket ends at the cutoff, gives
the cutoff row; no per-cutoff filtering of the input is needed.

Grids are aligned to ``every`` in UTC, so the input is shifted by the cutoff's *phase*
(``cutoff_time - truncate(cutoff_time, every)``), built, and shifted back: one table build per
distinct phase. Cutoffs on the hour cost one build for hourly features; random cutoffs cost
one build each. Calendar-length steps (months, years) have no fixed phase and are refused.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import polars as pl

from tu_analytics.counters import HOURS_PER_MS, TIME
from tu_analytics.features.dictionary import feature_dictionary

if TYPE_CHECKING:
    from tu_analytics.features.table import FeatureTable

__all__ = ["cutoff_rows"]

_M = "MachineId"
_C = "cutoff_time"
_KEYS = ("bucket_start", "bucket_end", _C)


def _shift(lf: pl.LazyFrame, by: timedelta) -> pl.LazyFrame:
    """Move every datetime column by ``by`` (measurement and receipt clocks alike)."""
    schema = lf.collect_schema()
    cols = [n for n, t in schema.items() if isinstance(t, pl.Datetime)]
    return lf.with_columns(pl.col(c).cast(TIME) + by for c in cols)


def _checked(cutoffs: pl.DataFrame | pl.LazyFrame, step: str) -> pl.DataFrame:
    if any(unit in step for unit in ("mo", "y", "q")):
        raise ValueError(f"cutoff rows need a fixed-length every, got {step!r}")
    frame = cutoffs.lazy().collect()
    missing = [c for c in (_M, _C) if c not in frame.columns]
    if missing:
        raise KeyError(f"cutoffs lack column(s) {missing}")
    reserved = [c for c in frame.columns if c in ("bucket_start", "bucket_end", "_row")]
    if reserved:
        raise ValueError(f"cutoffs may not have column(s) {reserved}")
    return frame.with_columns(pl.col(_M).cast(pl.String), pl.col(_C).cast(TIME))


def cutoff_rows(
    main: pl.DataFrame | pl.LazyFrame,
    cutoffs: pl.DataFrame | pl.LazyFrame,
    *,
    every: str,
    fault_codes: pl.DataFrame | pl.LazyFrame | None = None,
    site_radius_m: float = 100.0,
) -> FeatureTable:
    """One feature row per row of ``cutoffs`` (``MachineId``, ``cutoff_time``, extra columns
    carried along), in the cutoffs' order; returns a ``FeatureTable``.

    A cutoff before any data of its machine gives a row of nulls (unknown, never 0). Use it
    through ``feature_table(main, cutoffs=...)``.
    """
    from tu_analytics.features._assembly import _prepared
    from tu_analytics.features._blocks import site_anchors_of
    from tu_analytics.features.table import _RULES, FeatureTable, _build, _Clock, _Grid

    cut = _checked(cutoffs, every).with_row_index("_row")
    phase = pl.col(_C) - pl.col(_C).dt.truncate(every)
    cut = cut.with_columns(phase.alias("_phase"))
    clock = _Clock(every, None, _RULES)
    parts: list[pl.DataFrame] = []
    features: list[str] = []
    for (delta,), group in cut.group_by("_phase", maintain_order=True):
        assert isinstance(delta, timedelta)
        machines = group.get_column(_M).unique().to_list()
        pick = pl.col(_M).cast(pl.String).is_in(machines)
        faults = None if fault_codes is None else _shift(fault_codes.lazy().filter(pick), -delta)
        last = group.get_column(_C).max()
        assert isinstance(last, datetime)
        table = _build(
            _shift(main.lazy().filter(pick), -delta),
            faults,
            clock,
            _Grid(end=last - delta),
            site_radius_m,
            # sites: from every machine, on this phase's grid (it decides what is known when)
            anchors=site_anchors_of(_prepared(_shift(main.lazy(), -delta))[0], clock),
        )
        frame = table.frame
        assert isinstance(frame, pl.DataFrame)
        features = frame.columns
        rows = frame.with_columns(pl.col(_C) + delta).drop("bucket_start", "bucket_end")
        parts.append(group.join(rows, on=[_M, _C], how="left"))
    if not parts:
        empty = _build(main.lazy().head(0), fault_codes, clock, _Grid(), site_radius_m)
        assert isinstance(empty.frame, pl.DataFrame)
        features = empty.frame.columns
        parts = [cut.join(empty.frame.drop("bucket_start", "bucket_end"), on=[_M, _C])]
    ms = _step_ms(every)
    window = pl.duration(milliseconds=ms)
    extra = [c for c in cut.columns if c not in (_M, _C, "_row", "_phase")]
    out = (
        pl.concat(parts, how="diagonal_relaxed")
        .sort("_row")
        .with_columns(
            (pl.col(_C) - window).alias("bucket_start"),
            pl.col(_C).alias("bucket_end"),
            pl.lit(ms * HOURS_PER_MS).alias("bucket_hours"),
        )
        .select(*features, *extra)
    )
    return FeatureTable(
        frame=out,
        dictionary=feature_dictionary([c for c in out.columns if c not in extra]),
        every=every,
        allowed_latency=None,
    )


def _step_ms(step: str) -> int:
    start = pl.datetime(2000, 1, 3, time_zone="UTC")
    span = start.dt.offset_by(step) - start
    ms = pl.select(span.dt.total_milliseconds()).item()
    return int(ms)
