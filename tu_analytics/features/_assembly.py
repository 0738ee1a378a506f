"""The feature table's assembly: the bucket grid, the blocks joined onto it, derived columns.

Part of :mod:`tu_analytics.features.table`. :func:`_build` makes one table from one frame;
:func:`_grouped` makes it machine group by machine group with the same result.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

import polars as pl

from tu_analytics.counters import HOURS_PER_MS, TIME
from tu_analytics.features._blocks import (
    COUNTERS,
    IDENTITY,
    STATS,
    _counter_block,
    _fault_block,
    _identity_block,
    _position_block,
    _record_block,
    _records,
    _site_block,
    _stats_block,
    site_anchors_of,
)
from tu_analytics.features._pit import _B, _M, _MINUTES_PER_MS, KEYS, _Clock, _ensure
from tu_analytics.features._result import FeatureTable
from tu_analytics.features.dictionary import FEATURE_NAMES, feature_dictionary
from tu_analytics.sites import merge_anchors


def _columns_needed(schema: pl.Schema) -> dict[str, pl.DataType]:
    cols: dict[str, pl.DataType] = {_M: pl.String(), "kafka_timestamp": TIME}
    for _, counter in COUNTERS:
        cols[counter] = pl.Float64()
        cols[f"{counter}_datetime"] = TIME
    for _, field in STATS:
        cols[field] = pl.Float64()
        cols[f"{field}_datetime"] = TIME
    cols.update({"Latitude": pl.Float64(), "Longitude": pl.Float64(), "Location_datetime": TIME})
    cols.update({"City": pl.String(), "LocationAddress_datetime": TIME})
    for name, dtype in schema.items():
        if name.endswith("_datetime") and isinstance(dtype, pl.Datetime):
            cols[name] = TIME
    return cols


def _prepass(
    lf: pl.LazyFrame, faults: pl.LazyFrame | None, time_cols: list[str]
) -> tuple[pl.LazyFrame, pl.LazyFrame | None, list[str]]:
    """One cheap eager pass that makes the main plan faster (skipped for ``lazy=True`` on a
    LazyFrame, so that building the plan computes nothing).

    * Most of the ~140 insight columns are empty in a window: dropping them from the record
      time (a max over all ``*_datetime`` columns) makes it several times cheaper.
    * Sorting on an Enum (integer codes) instead of 36-character UUID strings roughly halves
      the cost of the dozen per-machine sorts. Categories are sorted, so order is unchanged.
    """
    summary = lf.select(
        pl.col(_M).drop_nulls().unique().implode().alias("_ids"),
        *[pl.col(c).is_not_null().any().alias(c) for c in time_cols],
    ).collect()
    filled = [c for c in time_cols if summary.get_column(c).item()]
    ids = summary.get_column("_ids").explode().cast(pl.String)
    fault_has_ids = faults is not None and _M in faults.collect_schema().names()
    if faults is not None and fault_has_ids:
        more = faults.select(pl.col(_M).cast(pl.String).drop_nulls().unique()).collect()
        ids = pl.concat([ids, more.to_series()])
    machine = pl.Enum(ids.drop_nulls().unique().sort())
    lf = lf.with_columns(pl.col(_M).cast(pl.String).cast(machine))
    if faults is not None and fault_has_ids:
        faults = faults.with_columns(pl.col(_M).cast(pl.String).cast(machine))
    return lf, faults, filled


@dataclass(frozen=True)
class _Grid:
    """The explicit bucket grid: rows from ``start`` (inclusive) to ``end`` (exclusive)."""

    start: datetime | None = None
    end: datetime | None = None

    def last(self, keys: pl.LazyFrame, clock: _Clock) -> pl.LazyFrame:
        """One row, ``_last``: the start of the grid's last bucket."""
        if self.end is None:
            return keys.select(pl.col(_B).max().alias("_last"))
        last = pl.lit(self.end).cast(TIME).dt.offset_by("-1ms").dt.truncate(clock.step)
        return pl.LazyFrame().select(last.alias("_last"))


def _build(
    main: pl.DataFrame | pl.LazyFrame,
    fault_codes: pl.DataFrame | pl.LazyFrame | None,
    clock: _Clock,
    grid: _Grid,
    site_radius_m: float,
    *,
    lazy: bool = False,
    anchors: pl.DataFrame | pl.LazyFrame | None = None,
) -> FeatureTable:
    """The table of ``main``; ``anchors`` (:func:`site_anchors_of`, same clock) of the whole
    input when ``main`` is one machine group of it (default: ``main``'s own)."""
    schema = main.lazy().collect_schema()
    lf, time_cols = _prepared(main)
    faults = None if fault_codes is None else fault_codes.lazy()
    if isinstance(main, pl.DataFrame) or not lazy:
        lf, faults, time_cols = _prepass(lf, faults, time_cols)

    blocks: list[pl.LazyFrame] = []
    blocks += _counter_block(lf, clock)
    blocks += _stats_block(lf, clock)
    blocks += _position_block(lf, clock, site_radius_m)
    identity = [c for c in IDENTITY if c in schema and c != "site"]
    records = _records(lf, time_cols, identity).cache()
    blocks += _record_block(lf, records, clock, time_cols)
    blocks += _identity_block(records, clock, identity)
    whole = site_anchors_of(lf, clock) if anchors is None else anchors.lazy()
    blocks += _site_block(lf, clock, whole)
    if faults is not None:
        blocks += _fault_block(faults, clock)
    # Each block feeds both the grid bounds and a join: compute it once.
    blocks = [b.cache() for b in blocks]

    keys = pl.concat([b.select(_M, _B) for b in blocks], how="vertical")
    rows = (
        keys.group_by(_M)
        .agg(pl.col(_B).min().alias("_first"))
        .join(grid.last(keys, clock), how="cross")
        .select(
            _M,
            pl.datetime_ranges("_first", "_last", interval=clock.step).alias(_B),
        )
        .explode(_B)
        .drop_nulls(_B)
    )
    frame = rows
    for block in blocks:
        frame = frame.join(block, on=list(KEYS), how="left")
    frame = frame.sort(_M, _B)
    out = _finish(frame, clock, faults=faults is not None).with_columns(pl.col(_M).cast(pl.String))
    if grid.start is not None:
        out = out.filter(pl.col(_B) >= pl.lit(grid.start).cast(TIME))
    table = FeatureTable(
        frame=out,
        dictionary=feature_dictionary(out.collect_schema().names()),
        every=clock.step,
        allowed_latency=clock.latency,
    )
    return table if lazy else table.collect()


def _grouped(
    main: pl.DataFrame | pl.LazyFrame,
    fault_codes: pl.DataFrame | pl.LazyFrame | None,
    clock: _Clock,
    grid: _Grid,
    site_radius_m: float,
    group_size: int,
    anchors: pl.DataFrame | None = None,
) -> FeatureTable:
    """The table machine group by machine group: equal to the whole-frame table because
    the grid's end is shared and machines interact only through the sites' anchors, which
    are taken from the whole input (``anchors``, else computed group by group first)."""
    if group_size < 1:
        raise ValueError("group_size must be >= 1")
    if grid.end is None:
        raise ValueError("group_size needs end=: the bucket grid every group shares")
    ids = main.lazy().select(pl.col(_M).cast(pl.String).drop_nulls().unique())
    if fault_codes is not None:
        more = fault_codes.lazy().select(pl.col(_M).cast(pl.String).drop_nulls().unique())
        ids = pl.concat([ids, more]).unique()
    machines = ids.collect().get_column(_M).sort().to_list()
    if anchors is None:
        anchors = _whole_anchors(main, clock, machines, group_size)
    parts: list[pl.DataFrame] = []
    template: FeatureTable | None = None
    for i in range(0, max(len(machines), 1), group_size):
        chunk = machines[i : i + group_size]
        pick = pl.col(_M).cast(pl.String).is_in(chunk)
        faults = None if fault_codes is None else fault_codes.lazy().filter(pick).collect()
        template = _build(
            _group_rows(main, pick), faults, clock, grid, site_radius_m, anchors=anchors
        )
        assert isinstance(template.frame, pl.DataFrame)
        parts.append(template.frame)
    assert template is not None
    return replace(template, frame=pl.concat(parts).sort(_M, _B))


def _prepared(main: pl.DataFrame | pl.LazyFrame) -> tuple[pl.LazyFrame, list[str]]:
    """``main`` with every column the blocks read (null where absent), rows without a
    machine or a receipt time dropped; and the measurement-time columns."""
    raw = main.lazy()
    needed = _columns_needed(raw.collect_schema())
    lf = _ensure(raw, needed).drop_nulls([_M, "kafka_timestamp"])
    return lf, [c for c in needed if c.endswith("_datetime")]


def _whole_anchors(
    main: pl.DataFrame | pl.LazyFrame, clock: _Clock, machines: list[str], group_size: int
) -> pl.DataFrame:
    """The whole input's site anchors, read one machine group at a time (a LazyFrame scan of
    months then needs the memory of one group's site readings only)."""
    if isinstance(main, pl.DataFrame):
        return site_anchors_of(_prepared(main)[0], clock).collect()
    parts = [site_anchors_of(_prepared(main.head(0))[0], clock).collect()]
    for i in range(0, len(machines), group_size):
        pick = pl.col(_M).cast(pl.String).is_in(machines[i : i + group_size])
        parts.append(site_anchors_of(_prepared(main.filter(pick))[0], clock).collect())
    return merge_anchors(pl.concat(parts))


def _group_rows(main: pl.DataFrame | pl.LazyFrame, pick: pl.Expr) -> pl.DataFrame:
    """One group's rows, in one pass over the input and only the columns the table reads:
    the plan reads its input several times (pre-pass, blocks), each a scan of all history
    when ``main`` is a scan (3x slower over an archive)."""
    lf = main.lazy()
    schema = lf.collect_schema()
    needed = _columns_needed(schema)
    cols = [c for c in schema.names() if c in needed or c in IDENTITY]
    return lf.filter(pick).select(cols).collect()


def _finish(frame: pl.LazyFrame, clock: _Clock, *, faults: bool) -> pl.LazyFrame:
    """Derived, as-of and renamed columns, in dictionary order."""
    end = pl.col(_B).dt.offset_by(clock.step)
    over = pl.col(_M)
    frame = frame.with_columns(
        end.alias("bucket_end"),
        ((end - pl.col(_B)).dt.total_milliseconds() * HOURS_PER_MS).alias("bucket_hours"),
        clock.cutoff(end).alias("cutoff_time"),
        # Identity as of the cut-off: the latest value known by then, carried forward.
        *[
            pl.col(c).forward_fill().over(over)
            for c in IDENTITY
            if c in frame.collect_schema().names()
        ],
    )
    # As-of position: running arg-max of measurement time over buckets, then carry forward.
    best_t = pl.col("_pos_t").cum_max().over(over).forward_fill().over(over)
    newest_seen = pl.col("_seen_t").cum_max().over(over).forward_fill().over(over)
    frame = frame.with_columns(
        pl.when(pl.col("_pos_t") == best_t).then(pl.col("_pos_lat")).alias("_lat_new"),
        pl.when(pl.col("_pos_t") == best_t).then(pl.col("_pos_lon")).alias("_lon_new"),
        newest_seen.alias("_newest"),
    ).with_columns(
        pl.col("_lat_new").forward_fill().over(over).alias("latitude"),
        pl.col("_lon_new").forward_fill().over(over).alias("longitude"),
        (
            (pl.col("bucket_end") - pl.col("_newest")).dt.total_milliseconds() * _MINUTES_PER_MS
        ).alias("staleness_minutes"),
    )
    frame = frame.with_columns(_derived())
    if faults:
        frame = frame.with_columns(
            pl.col("fault_count").fill_null(0),
            pl.col("fault_new_codes").fill_null(0),
            (
                pl.col("_raised_n").fill_null(0).cum_sum().over(over)
                - pl.col("_cleared_n").fill_null(0).cum_sum().over(over)
            )
            .cast(pl.UInt32)
            .alias("faults_active"),
        )
    present = set(frame.collect_schema().names())
    return frame.select([n for n in FEATURE_NAMES if n in present])


def _derived() -> list[pl.Expr]:
    """Ratios, rates, counter health and distance from the joined block columns."""
    hours = pl.col("bucket_hours")
    op = pl.col("operating_hours")
    counter_names = [name for name, _ in COUNTERS]
    return [
        (op / hours).alias("operating_ratio"),
        (pl.col("idle_hours") / hours).alias("idle_ratio"),
        (pl.col("engine_hours") / hours).alias("engine_ratio"),
        pl.when(op > 0).then(pl.col("fuel_used_l") / op).alias("fuel_rate_lph"),
        pl.sum_horizontal([pl.col(f"_{n}_resets").fill_null(0) for n in counter_names])
        .cast(pl.UInt32)
        .alias("counter_resets"),
        pl.sum_horizontal([pl.col(f"_{n}_gaps").fill_null(0) for n in counter_names])
        .cast(pl.UInt32)
        .alias("counter_gaps"),
        pl.coalesce("_odometer_km", "_gps_km").alias("distance_km"),
        pl.when(pl.col("_odometer_km").is_not_null())
        .then(pl.lit("odometer"))
        .when(pl.col("_gps_km").is_not_null())
        .then(pl.lit("gps"))
        .alias("distance_source"),
        pl.col("position_count").fill_null(0),
        pl.col("geohash6_cells").fill_null(0),
        pl.col("record_count").fill_null(0),
    ]
