"""The feature table's blocks: each turns readings into per-(machine, bucket) columns.

Part of :mod:`tu_analytics.features.table`. Counters, stats, positions, records, identity and
faults are independent: each returns lazy frames keyed on ``MachineId, bucket_start`` that the
assembly joins onto the bucket grid.
"""

from __future__ import annotations

from functools import partial
from typing import Literal

import polars as pl

from tu_analytics.counters import HOURS_PER_MS, TIME, allocate, counter_deltas
from tu_analytics.features._geo import EARTH_RADIUS_M, geohash_code, haversine_m
from tu_analytics.features._pit import (
    _B,
    _M,
    _MINUTES_PER_MS,
    _Clock,
    _ensure,
    _ordered,
    _readings,
)
from tu_analytics.sites import site_anchors, sites_at

#: GPS steps implying more than this are position glitches, not travel.
MAX_GPS_SPEED_KMH = 150.0

#: (feature prefix, counter insight)
COUNTERS: tuple[tuple[str, str], ...] = (
    ("operating_hours", "CumulativeOperatingHours"),
    ("idle_hours", "CumulativeIdleHours"),
    ("engine_hours", "CumulativeEngineHours"),
    ("fuel_used_l", "EngineTotalFuelUsed"),
    ("idle_fuel_used_l", "EngineTotalIdleFuelUsed"),
    ("_odometer_km", "TotalVehicleDistance"),
)
#: (feature prefix, numeric insight) summarised by mean/min/max/last
STATS: tuple[tuple[str, str], ...] = (
    ("battery_v", "BatteryPotential"),
    ("def_level_pct", "AfterTreatmentDieselExhaustFluidTankLevel"),
    ("coolant_temp_c", "EngineCoolantTemperature"),
    ("ambient_temp_c", "AmbientAirTemperature"),
)
#: Machine identity carried with every row, as known at the row's cut-off. ``site`` is always
#: there: ``tu_analytics.sites.sites_at`` of the readings available by then
#: (:func:`_site_block`), given the whole input's anchors.
IDENTITY: tuple[str, ...] = ("EquipmentID", "OEMName", "Model", "site")


def _counter_block(lf: pl.LazyFrame, clock: _Clock) -> list[pl.LazyFrame]:
    out = []
    for name, counter in COUNTERS:
        ts = f"{counter}_datetime"
        on_time = lf.select(_M, counter, ts, "kafka_timestamp").filter(
            clock.on_time(pl.col(ts), pl.col("kafka_timestamp"))
        )
        how: Literal["end", "spread"] = "end" if clock.rules.boundary else "spread"
        per_bucket = allocate(counter_deltas(on_time, counter), clock.step, how=how).select(
            _M,
            _B,
            pl.when(pl.col("covered_hours") > 0).then(pl.col("delta")).alias(name),
            pl.col("resets").alias(f"_{name}_resets"),
            pl.col("gaps").alias(f"_{name}_gaps"),
        )
        out.append(per_bucket)
    return out


def _stats_block(lf: pl.LazyFrame, clock: _Clock) -> list[pl.LazyFrame]:
    out = []
    for prefix, field in STATS:
        r = _readings(lf, f"{field}_datetime", {"_v": pl.col(field).cast(pl.Float64)}, clock)
        out.append(
            r.filter(pl.col("_a") == pl.col("_b"))
            .group_by(_M, pl.col("_b").alias(_B))
            .agg(
                _ordered("_v").list.mean().alias(f"{prefix}_mean"),
                pl.col("_v").min().alias(f"{prefix}_min"),
                pl.col("_v").max().alias(f"{prefix}_max"),
                pl.col("_v").sort_by("_t").last().alias(f"{prefix}_last"),
            )
        )
    return out


def _position_block(lf: pl.LazyFrame, clock: _Clock, site_radius_m: float) -> list[pl.LazyFrame]:
    lat, lon = pl.col("Latitude").cast(pl.Float64), pl.col("Longitude").cast(pl.Float64)
    valid = (
        lat.is_finite()
        & lon.is_finite()
        & (lat.abs() <= 90)
        & (lon.abs() <= 180)
        # Altitude-only records carry (0, 0) (streaming format §4).
        & ~((lat == 0) & (lon == 0))
    )
    pos = _readings(lf.filter(valid), "Location_datetime", {"_lat": lat, "_lon": lon}, clock)
    on_time = pos.filter(pl.col("_a") == pl.col("_b"))
    deg = pl.lit(EARTH_RADIUS_M * 3.141592653589793 / 180.0)
    lat_r, lon_r = pl.col("_lat"), pl.col("_lon")
    # Metres per degree of longitude at the group's centroid (equirectangular).
    lon_scale = deg * _ordered("_lat").list.mean().radians().cos()
    # Mean squared distance to the centroid = variance of each local axis (ddof 0).
    gyration = (
        _ordered("_lat").list.var(ddof=0) * deg**2
        + _ordered("_lon").list.var(ddof=0) * lon_scale**2
    ).sqrt()
    to_median = (
        ((lat_r - lat_r.median()) * deg) ** 2
        + ((lon_r - lon_r.median()) * deg * lat_r.median().radians().cos()) ** 2
    ).sqrt()
    window = (
        on_time.with_columns(geohash_code(pl.col("_lat"), pl.col("_lon"), 6).alias("_gh"))
        .group_by(_M, pl.col("_b").alias(_B))
        .agg(
            pl.len().cast(pl.UInt32).alias("position_count"),
            gyration.alias("dispersion_m"),
            pl.col("_gh").n_unique().cast(pl.UInt32).alias("geohash6_cells"),
            (to_median <= site_radius_m).mean().alias("time_on_site"),
        )
    )
    # Path length through consecutive on-time positions, credited to the later one's bucket.
    same = pl.col(_M) == pl.col(_M).shift(1)
    step_m = haversine_m(
        pl.col("_lat").shift(1), pl.col("_lon").shift(1), pl.col("_lat"), pl.col("_lon")
    )
    hours = (pl.col("_t") - pl.col("_t").shift(1)).dt.total_milliseconds() * HOURS_PER_MS
    gps = (
        on_time.with_columns(pl.when(same).then(step_m * 0.001).alias("_km"), hours.alias("_h"))
        .filter(pl.col("_km").is_not_null() & (pl.col("_km") <= MAX_GPS_SPEED_KMH * pl.col("_h")))
        .group_by(_M, pl.col("_b").alias(_B))
        .agg(_ordered("_km").list.sum().alias("_gps_km"))
    )
    # As-of: the newest position among all those available by each bucket.
    latest = pos.group_by(_M, pl.col("_a").alias(_B)).agg(
        pl.col("_t").max().alias("_pos_t"),
        pl.col("_lat").sort_by("_t").last().alias("_pos_lat"),
        pl.col("_lon").sort_by("_t").last().alias("_pos_lon"),
    )
    return [window, gps, latest]


def _records(lf: pl.LazyFrame, time_cols: list[str], identity: list[str]) -> pl.LazyFrame:
    """One row per record with any measured field: MachineId, receipt, earliest measurement
    ``_t0`` and the identity columns (shared by the record and identity blocks)."""
    earliest = (
        pl.min_horizontal([pl.col(c) for c in time_cols]) if time_cols else pl.lit(None, dtype=TIME)
    )
    cols = [pl.col(n).cast(pl.String) for n in identity]
    return lf.select(_M, "kafka_timestamp", earliest.alias("_t0"), *cols).drop_nulls("_t0")


def _site_events(lf: pl.LazyFrame, clock: _Clock) -> pl.LazyFrame:
    """What a site is made of, as the clock sees it: one row per position reading and per
    City reading, each with ``_a``, the first bucket it is available for (so a site never
    uses a reading measured after the bucket or received after its cut-off)."""
    k = pl.col("kafka_timestamp")
    none = pl.lit(None, pl.Float64)
    return pl.concat(
        [
            lf.drop_nulls("Location_datetime").select(
                _M,
                k,
                clock.available(pl.col("Location_datetime"), k).alias("_a"),
                pl.lit(None, pl.String).alias("City"),
                pl.col("Latitude").cast(pl.Float64),
                pl.col("Longitude").cast(pl.Float64),
            ),
            lf.drop_nulls(["LocationAddress_datetime", "City"]).select(
                _M,
                k,
                clock.available(pl.col("LocationAddress_datetime"), k).alias("_a"),
                pl.col("City").cast(pl.String),
                none.alias("Latitude"),
                none.alias("Longitude"),
            ),
        ]
    )


def site_anchors_of(lf: pl.LazyFrame, clock: _Clock) -> pl.LazyFrame:
    """:func:`tu_analytics.sites.site_anchors` of the readings as the clock sees them."""
    return site_anchors(_site_events(lf, clock), known_at="_a")


def _site_block(lf: pl.LazyFrame, clock: _Clock, anchors: pl.LazyFrame) -> list[pl.LazyFrame]:
    """Per bucket in which a reading became available, the site as of the cut-off
    (``_finish`` carries it forward); ``anchors``: :func:`site_anchors_of` the whole input."""
    machine = lf.collect_schema()[_M]
    sited = _site_events(lf, clock).map_batches(
        partial(sites_at, known_at="_a", anchors=anchors),
        schema={_M: pl.String(), "_a": TIME, "site": pl.String()},
    )
    return [sited.select(pl.col(_M).cast(machine), pl.col("_a").alias(_B), "site")]


def _record_block(
    lf: pl.LazyFrame, records: pl.LazyFrame, clock: _Clock, time_cols: list[str]
) -> list[pl.LazyFrame]:
    k = pl.col("kafka_timestamp")
    # A record counts in the bucket it was received in, or, if every field in it was measured
    # later (device clock ahead), in the bucket of its earliest measurement; a record without
    # any measured field carries no data and is not counted.
    count = records.group_by(
        _M, pl.max_horizontal(clock.bucket(k), clock.bucket(pl.col("_t0"))).alias(_B)
    ).agg(pl.len().cast(pl.UInt32).alias("record_count"))
    # Every measurement of every field, not one time per record: a record mixes fields
    # measured at different times, and a per-record max would let a field measured after a
    # bucket hide (or reveal) the record's earlier measurements from that bucket.
    schema = lf.collect_schema()
    empty = pl.LazyFrame(schema={_M: schema[_M], "_t": TIME, "_k": TIME})
    measured = pl.concat(
        [empty]
        + [lf.select(_M, pl.col(c).alias("_t"), k.alias("_k")).drop_nulls("_t") for c in time_cols]
    )
    newest = measured.group_by(_M, clock.available(pl.col("_t"), pl.col("_k")).alias(_B)).agg(
        pl.col("_t").max().alias("_seen_t")
    )
    same = pl.col(_M) == pl.col(_M).shift(1)
    gaps = (
        measured.filter(clock.on_time(pl.col("_t"), pl.col("_k")))
        .select(_M, "_t")
        # Fields of one record often share a timestamp: a hash dedup shrinks the sort.
        .unique()
        .sort(_M, "_t")
        .with_columns(
            pl.when(same)
            .then((pl.col("_t") - pl.col("_t").shift(1)).dt.total_milliseconds() * _MINUTES_PER_MS)
            .alias("_gap")
        )
        .drop_nulls("_gap")
        .group_by(_M, clock.bucket(pl.col("_t")).alias(_B))
        .agg(pl.col("_gap").max().alias("max_gap_minutes"))
    )
    return [count, newest, gaps]


def _identity_block(records: pl.LazyFrame, clock: _Clock, names: list[str]) -> list[pl.LazyFrame]:
    """Per bucket, the latest non-null value of each identity column that became available in
    it; ``_finish`` carries it forward.

    A record's header becomes available like its earliest measured field (bucket of that
    measurement, or the first bucket whose cut-off its receipt meets, whichever is later),
    so it joins exactly the buckets the record's data joins. Latest means latest received
    (ties: the larger value), never latest measured: receipt order is what a live reader sees.
    """
    if not names:
        return []
    k = pl.col("kafka_timestamp")
    return [
        records.filter(pl.any_horizontal([pl.col(n).is_not_null() for n in names]))
        .group_by(_M, clock.available(pl.col("_t0"), k).alias(_B))
        .agg(pl.col(n).sort_by(k, n).drop_nulls().last() for n in names)
    ]


def _fault_occurrences(fault_codes: pl.DataFrame | pl.LazyFrame, clock: _Clock) -> pl.LazyFrame:
    """One row per fault occurrence (machine, code, raise time): the bucket it was raised in
    (``_b``), the buckets its raise and its clear became known (``_known``, ``_cleared``) and
    its severity (``_sev``)."""
    fc = _ensure(
        fault_codes.lazy(),
        {
            _M: pl.String(),
            "CodeIdentifier": pl.String(),
            "CodeSeverity": pl.String(),
            "datetime": TIME,
            "datetimeCleared": TIME,
            "kafka_timestamp": TIME,
        },
    ).drop_nulls([_M, "CodeIdentifier", "datetime", "kafka_timestamp"])
    k = pl.col("kafka_timestamp")
    occ_key = [_M, "CodeIdentifier", "datetime"]
    # Any row of an occurrence proves it was raised; only rows with datetimeCleared clear it.
    occurrences = (
        fc.with_columns(
            clock.available(pl.col("datetime"), k).alias("_raise_a"),
            pl.when(pl.col("datetimeCleared").is_not_null())
            .then(clock.available(pl.col("datetimeCleared"), k))
            .alias("_clear_a"),
            pl.col("CodeSeverity")
            .cast(pl.String)
            .str.strip_chars()
            .cast(pl.Float64, strict=False)
            .alias("_sev"),
        )
        .group_by(occ_key)
        .agg(
            pl.col("_raise_a").min().alias("_known"),
            pl.col("_clear_a").min().alias("_cleared"),
            pl.col("_sev").max().alias("_sev"),
        )
        .with_columns(
            clock.bucket(pl.col("datetime")).alias("_b"),
            # A clear cannot take effect before the raise is known (guards bad clocks).
            pl.when(pl.col("_cleared").is_not_null())
            .then(pl.max_horizontal("_cleared", "_known"))
            .alias("_cleared"),
        )
    )
    return occurrences


def _fault_block(fault_codes: pl.DataFrame | pl.LazyFrame, clock: _Clock) -> list[pl.LazyFrame]:
    occurrences = _fault_occurrences(fault_codes, clock)
    raised = (
        occurrences.filter(pl.col("_known") == pl.col("_b"))
        .group_by(_M, pl.col("_b").alias(_B))
        .agg(
            pl.len().cast(pl.UInt32).alias("fault_count"),
            pl.col("_sev").max().alias("fault_max_severity"),
        )
    )
    known = occurrences.group_by(_M, pl.col("_known").alias(_B)).agg(
        pl.len().cast(pl.Int64).alias("_raised_n")
    )
    cleared = (
        occurrences.drop_nulls("_cleared")
        .group_by(_M, pl.col("_cleared").alias(_B))
        .agg(pl.len().cast(pl.Int64).alias("_cleared_n"))
    )
    new_codes = (
        occurrences.group_by(_M, "CodeIdentifier")
        .agg(pl.col("_known").min().alias(_B))
        .group_by(_M, _B)
        .agg(pl.len().cast(pl.UInt32).alias("fault_new_codes"))
    )
    return [raised, known, cleared, new_codes]
