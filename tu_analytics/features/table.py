"""Point-in-time feature table: one row per machine and time bucket.

Point-in-time rule
------------------
Every reading ``r`` (one field of one record) has a measurement time ``m`` (its
``X_datetime``) and a receipt time ``k`` (the record's ``kafka_timestamp``). Buckets are
``[bucket_start, bucket_end)`` in UTC. Reading ``r`` may be used for bucket ``t`` only if
``m < end(t)`` **and** ``k <= end(t) + allowed_latency``. The first such bucket is the
reading's *availability bucket*; the reading is *on time* when that is the bucket of ``m``.

* **Window features** (stats, counts, counter deltas, distances, gaps: anything about what
  happened *in* the bucket) use on-time readings only. A late reading can never join its own
  bucket, and splicing it into a later bucket's sequence would rewrite history; for
  cumulative counters nothing is lost, as the next on-time reading's delta spans it.
* **As-of features** (last position, staleness, active faults, first-seen codes: the state
  *at* bucket end) use every reading available by the bucket, late or not.

A reading delivered in several records counts once, with its earliest receipt.

* **Counters across a bucket end.** Deltas are taken between consecutive on-time readings and
  credited to the bucket holding the later reading (:func:`tu_analytics.counters.allocate`
  with ``how="end"``), never spread backwards. An interval that spans a bucket's end is not
  split: at the cut-off no reading measured after the end may be used, so the counter value
  at the end is unknown and *the rest of the interval goes to the next bucket* (the bucket
  of its closing on-time reading). Totals are exact; a bucket after a long silence can show
  more hours than its length (``operating_ratio > 1``).
* **Identity** (``EquipmentID``, ``OEMName``, ``Model``, ``site`` when the input has them)
  is the latest value received by the row's cut-off, carried forward.
* Every row has ``cutoff_time = bucket_end + allowed_latency``: the moment it is final.

The two rules (latency, boundary) can be switched off only through ``_RULES``, for the
mutation tests that prove the leakage tests would notice.
Records with a null ``MachineId`` or ``kafka_timestamp`` cannot be placed in time and are
ignored. Consequence (tested, bit for bit): adding or changing data measured after bucket
``t`` or received after its cut-off leaves every feature of every bucket up to ``t``
unchanged. Float reductions are made order-stable for this (see :func:`_ordered`).

Rows: for every machine, every bucket from its first bucket with any data up to the last
bucket with data in the whole input, or up to ``end`` when given (dense, so silent hours show
up with their staleness). With ``end`` fixed, machines never interact, so the table can be
built machine group by machine group (``group_size``) with exactly the same result.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

import polars as pl

from tu_analytics.counters import HOURS_PER_MS, TIME, allocate, counter_deltas, duration_string
from tu_analytics.features.dictionary import (
    DICTIONARY_SCHEMA,
    FEATURE_NAMES,
    SEMANTICS_VERSION,
    feature_dictionary,
)

__all__ = ["FeatureTable", "feature_table", "geohash_code", "geohash_string"]

KEYS = ("MachineId", "bucket_start")
_M = "MachineId"
_B = "bucket_start"
_EARTH_RADIUS_M = 6_371_008.8
#: Reciprocals, not divisors: see ``tu_analytics.counters.HOURS_PER_MS``.
_MINUTES_PER_MS = 1.0 / 60_000.0
#: GPS steps implying more than this are position glitches, not travel.
MAX_GPS_SPEED_KMH = 150.0
_GEOHASH_ALPHABET = "0123456789bcdefghjkmnpqrstuvwxyz"

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
#: Machine identity carried with every row, as known at the row's cut-off. ``site`` comes
#: from ``tu_analytics.sites.assign_sites`` when the input frame has it.
IDENTITY: tuple[str, ...] = ("EquipmentID", "OEMName", "Model", "site")
_META_DICTIONARY = "tu_analytics.feature_dictionary"
_META_PARAMS = "tu_analytics.feature_params"
#: Parquet metadata key of :data:`~tu_analytics.features.dictionary.SEMANTICS_VERSION`.
META_SEMANTICS = "tu_analytics.semantics_version"


@dataclass(frozen=True)
class FeatureTable:
    """Features (``frame``, eager or lazy) and their ``dictionary`` (name, unit, definition,
    source_fields), plus the parameters they were built with."""

    frame: pl.DataFrame | pl.LazyFrame
    dictionary: pl.DataFrame
    every: str
    allowed_latency: str | None = None
    semantics_version: int = SEMANTICS_VERSION

    def metadata(self) -> dict[str, str]:
        """Parquet key-value metadata: dictionary, parameters and semantics version."""
        params = {
            "every": self.every,
            "allowed_latency": self.allowed_latency,
            "semantics_version": self.semantics_version,
        }
        return {
            _META_DICTIONARY: self.dictionary.write_json(),
            _META_PARAMS: json.dumps(params),
            META_SEMANTICS: str(self.semantics_version),
        }

    def collect(self) -> FeatureTable:
        """The same table with an eager ``frame``."""
        if isinstance(self.frame, pl.LazyFrame):
            return replace(self, frame=self.frame.collect())
        return self

    def write_parquet(self, path: str | Path) -> None:
        """Write the frame to ``path``; dictionary and parameters go in the file's key-value
        metadata, so the file explains itself and one file is all there is to copy."""
        frame = self.collect().frame
        assert isinstance(frame, pl.DataFrame)
        frame.write_parquet(path, metadata=self.metadata())

    @classmethod
    def read_parquet(cls, path: str | Path) -> FeatureTable:
        """Read a table written by :meth:`write_parquet`, dictionary included."""
        meta = pl.read_parquet_metadata(path)
        if _META_DICTIONARY not in meta:
            raise ValueError(f"{path} has no feature dictionary: not written by FeatureTable")
        dictionary = pl.read_json(meta[_META_DICTIONARY].encode(), schema=DICTIONARY_SCHEMA)
        params = json.loads(meta.get(_META_PARAMS, "{}"))
        return cls(
            frame=pl.read_parquet(path),
            dictionary=dictionary,
            every=str(params.get("every", "")),
            allowed_latency=params.get("allowed_latency"),
            semantics_version=int(params.get("semantics_version", 1)),
        )


# --------------------------------------------------------------------------- helpers


def geohash_code(lat: pl.Expr, lon: pl.Expr, precision: int = 6) -> pl.Expr:
    """Geohash cell of (lat, lon) as an integer (5 bits per character), columnar.

    Equal integers mean equal geohash strings of length ``precision``; the loop runs over bits,
    not rows. Bits alternate longitude/latitude, longitude first, as in the geohash spec.
    """
    if not 1 <= precision <= 12:
        raise ValueError("precision must be 1..12")
    total = 5 * precision
    lon_bits = (total + 1) // 2
    lat_bits = total // 2
    lon_idx = ((lon + 180.0) * (2**lon_bits / 360.0)).floor().clip(0, 2**lon_bits - 1)
    lat_idx = ((lat + 90.0) * (2**lat_bits / 180.0)).floor().clip(0, 2**lat_bits - 1)
    lon_i = lon_idx.cast(pl.Int64)
    lat_i = lat_idx.cast(pl.Int64)
    code = pl.lit(0, dtype=pl.Int64)
    for pos in range(total):
        # pos 0 is the most significant bit; even positions take longitude bits.
        src, nbits, j = (lon_i, lon_bits, pos // 2) if pos % 2 == 0 else (lat_i, lat_bits, pos // 2)
        bit = (src // (2 ** (nbits - 1 - j))) % 2
        code = code + bit * (2 ** (total - 1 - pos))
    return code


def geohash_string(code: int, precision: int = 6) -> str:
    """Decode an integer from :func:`geohash_code` into the usual base-32 text."""
    return "".join(
        _GEOHASH_ALPHABET[(code >> (5 * (precision - 1 - i))) & 31] for i in range(precision)
    )


def _haversine_m(lat1: pl.Expr, lon1: pl.Expr, lat2: pl.Expr, lon2: pl.Expr) -> pl.Expr:
    p1, p2 = lat1.radians(), lat2.radians()
    a = ((p2 - p1) / 2).sin() ** 2 + p1.cos() * p2.cos() * ((lon2 - lon1).radians() / 2).sin() ** 2
    return 2 * _EARTH_RADIUS_M * a.clip(0.0, 1.0).sqrt().arcsin()


@dataclass(frozen=True)
class _Rules:
    """The two point-in-time rules, as switches for the mutation tests only (a test that turns
    one off must see the leakage tests fail). Never turn them off in real use."""

    #: Use a reading only if received by its bucket's cut-off (end + allowed_latency).
    latency: bool = True
    #: Never use a counter reading measured after a bucket to allocate usage inside it.
    boundary: bool = True


_RULES = _Rules()


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


# --------------------------------------------------------------------------- blocks


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
    deg = pl.lit(_EARTH_RADIUS_M * 3.141592653589793 / 180.0)
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
    step_m = _haversine_m(
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


def _fault_block(fault_codes: pl.DataFrame | pl.LazyFrame, clock: _Clock) -> list[pl.LazyFrame]:
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


# --------------------------------------------------------------------------- assembly


def _columns_needed(schema: pl.Schema) -> dict[str, pl.DataType]:
    cols: dict[str, pl.DataType] = {_M: pl.String(), "kafka_timestamp": TIME}
    for _, counter in COUNTERS:
        cols[counter] = pl.Float64()
        cols[f"{counter}_datetime"] = TIME
    for _, field in STATS:
        cols[field] = pl.Float64()
        cols[f"{field}_datetime"] = TIME
    cols.update({"Latitude": pl.Float64(), "Longitude": pl.Float64(), "Location_datetime": TIME})
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


def feature_table(
    main: pl.DataFrame | pl.LazyFrame,
    *,
    every: str | timedelta = "1h",
    fault_codes: pl.DataFrame | pl.LazyFrame | None = None,
    allowed_latency: str | timedelta | None = None,
    site_radius_m: float = 100.0,
    lazy: bool = False,
    cutoffs: pl.DataFrame | pl.LazyFrame | None = None,
    start: datetime | None = None,
    end: datetime | None = None,
    group_size: int | None = None,
) -> FeatureTable:
    """Build point-in-time features per ``MachineId`` x UTC bucket of length ``every``.

    ``main`` is the Machine Insights ``main`` frame, ``fault_codes`` its long fault frame
    (fault features are only present when it is given). ``allowed_latency`` (default 0) is
    how long after a bucket's end a record may arrive and still count for that bucket; see
    the module docstring for the exact rule. ``site_radius_m`` defines ``time_on_site``.
    With ``lazy=True`` the returned ``frame`` is a LazyFrame (nothing computed yet).

    The bucket grid: ``end`` (exclusive) fixes the last bucket for every machine (default:
    the last bucket with data anywhere in the input); rows before ``start`` are dropped
    (history before it still feeds the as-of features). ``group_size=N`` builds the table
    N machines at a time (one pass over ``main`` per group, so a LazyFrame scan of months
    needs memory for N machines only); it needs ``end``, so that every group shares the
    grid and the result equals the whole-frame table exactly.

    ``cutoffs`` (columns ``MachineId``, ``cutoff_time``, any others are carried along,
    e.g. labels) gives one row per cutoff instead of a regular grid, Featuretools-style:
    the row's window is ``[cutoff_time - every, cutoff_time)`` and it uses only data
    received by ``cutoff_time`` (``allowed_latency`` must be unset). See
    :func:`tu_analytics.features.cutoffs.cutoff_rows`.

    Columns, definitions and as-of rules: ``FeatureTable.dictionary`` (and
    :mod:`tu_analytics.features.dictionary`).
    """
    if site_radius_m <= 0:
        raise ValueError("site_radius_m must be positive")
    clock = _Clock(duration_string(every), _latency_string(allowed_latency), _RULES)
    main = _with_sites(main)
    if cutoffs is not None:
        from tu_analytics.features.cutoffs import cutoff_rows

        if clock.latency is not None:
            raise ValueError("cutoff rows use no allowed_latency: the cutoff is the cut-off")
        return cutoff_rows(
            main, cutoffs, every=clock.step, fault_codes=fault_codes, site_radius_m=site_radius_m
        )
    grid = _Grid(start, end)
    if group_size is not None:
        return _grouped(main, fault_codes, clock, grid, site_radius_m, group_size)
    return _build(main, fault_codes, clock, grid, site_radius_m, lazy=lazy)


def _with_sites(main: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame | pl.LazyFrame:
    """A window's frame gains its ``site`` here, over the whole frame: the nearby-city rule
    reads other machines' rows, so it must not run per machine group. Lazy input (months of
    an archive) carries ``site`` from upstream if at all."""
    if isinstance(main, pl.LazyFrame) or "site" in main.columns or "City" not in main.columns:
        return main
    from tu_analytics.sites import assign_sites

    return assign_sites(main)


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
) -> FeatureTable:
    raw = main.lazy()
    schema = raw.collect_schema()
    needed = _columns_needed(schema)
    lf = _ensure(raw, needed).drop_nulls([_M, "kafka_timestamp"])
    time_cols = [c for c in needed if c.endswith("_datetime")]
    faults = None if fault_codes is None else fault_codes.lazy()
    if isinstance(main, pl.DataFrame) or not lazy:
        lf, faults, time_cols = _prepass(lf, faults, time_cols)

    blocks: list[pl.LazyFrame] = []
    blocks += _counter_block(lf, clock)
    blocks += _stats_block(lf, clock)
    blocks += _position_block(lf, clock, site_radius_m)
    identity = [c for c in IDENTITY if c in schema]
    records = _records(lf, time_cols, identity).cache()
    blocks += _record_block(lf, records, clock, time_cols)
    blocks += _identity_block(records, clock, identity)
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
) -> FeatureTable:
    """The table machine group by machine group: equal to the whole-frame table because
    machines never interact and the grid's end is shared."""
    if group_size < 1:
        raise ValueError("group_size must be >= 1")
    if grid.end is None:
        raise ValueError("group_size needs end=: the bucket grid every group shares")
    ids = main.lazy().select(pl.col(_M).cast(pl.String).drop_nulls().unique())
    if fault_codes is not None:
        more = fault_codes.lazy().select(pl.col(_M).cast(pl.String).drop_nulls().unique())
        ids = pl.concat([ids, more]).unique()
    machines = ids.collect().get_column(_M).sort().to_list()
    parts: list[pl.DataFrame] = []
    template: FeatureTable | None = None
    for i in range(0, max(len(machines), 1), group_size):
        chunk = machines[i : i + group_size]
        pick = pl.col(_M).cast(pl.String).is_in(chunk)
        faults = None if fault_codes is None else fault_codes.lazy().filter(pick)
        template = _build(main.lazy().filter(pick), faults, clock, grid, site_radius_m)
        assert isinstance(template.frame, pl.DataFrame)
        parts.append(template.frame)
    assert template is not None
    return replace(template, frame=pl.concat(parts).sort(_M, _B))


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
    hours = pl.col("bucket_hours")
    op = pl.col("operating_hours")
    counter_names = [name for name, _ in COUNTERS]
    frame = frame.with_columns(
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
    )
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
