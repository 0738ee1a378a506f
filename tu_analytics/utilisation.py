"""Operating hours, idle hours, utilisation and live state, as pure functions on frames.

Input is always the Machine Insights ``main`` frame (docs/frames.md), eager or lazy; output is
an eager Polars frame with exactly the columns the utilisation widgets read. Usage comes from
the increase of the cumulative hour counters (:func:`tu_analytics.counters.counter_deltas`:
measurement order, deduplicated, resets and impossible jumps contribute nothing), spread pro
rata over the buckets each interval between two readings overlaps
(:func:`tu_analytics.counters.allocate` with ``how="spread"``). These are descriptive
numbers over a whole window: a bucket's value can change when a later reading arrives. For
point-in-time values use :mod:`tu_analytics.features`.

Trackunit defines no public formula for utilisation (utilisation_notes.md §8); the
denominators used here are stated on each function.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import polars as pl

from tu_analytics.counters import HOURS_PER_MS, TIME, allocate, counter_deltas, duration_string
from tu_analytics.sites import assign_sites, machine_zones

__all__ = [
    "activity_summary",
    "daily_hours",
    "fleet_utilisation",
    "hour_of_day",
    "last_operating",
    "machine_state",
    "with_identity",
]

OPERATING = "CumulativeOperatingHours"
IDLE = "CumulativeIdleHours"

#: Help-centre rule (utilisation_notes.md §4, H1): a counter that grew by at least 70 % of
#: the wall-clock time between the last two readings means the machine is in that state.
STATE_THRESHOLD = 0.7


def _ensure(lf: pl.LazyFrame, columns: Mapping[str, pl.DataType]) -> pl.LazyFrame:
    """Add missing contract columns as typed nulls: every field is optional."""
    names = set(lf.collect_schema().names())
    missing = [pl.lit(None, dtype=t).alias(c) for c, t in columns.items() if c not in names]
    return lf.with_columns(missing) if missing else lf


def _counter_frame(main: pl.DataFrame | pl.LazyFrame) -> pl.LazyFrame:
    cols: dict[str, pl.DataType] = {"MachineId": pl.String(), "kafka_timestamp": TIME}
    for counter in (OPERATING, IDLE):
        cols[counter] = pl.Float64()
        cols[f"{counter}_datetime"] = TIME
    return _ensure(main.lazy(), cols)


def _allocated(lf: pl.LazyFrame, counter: str, every: str, tz: str, name: str) -> pl.LazyFrame:
    """Spread deltas of ``counter``; hours are null where no valid interval covers a bucket."""
    return allocate(counter_deltas(lf, counter), every, how="spread", tz=tz).select(
        "MachineId",
        "bucket_start",
        "bucket_end",
        pl.when(pl.col("covered_hours") > 0).then(pl.col("delta")).alias(name),
        pl.col("covered_hours").alias(f"_{name}_cov"),
    )


SITE_TZ = "site"
#: Identity columns carried into the utilisation frames, as known at each row's cut-off.
IDENTITY: tuple[str, ...] = ("EquipmentID", "OEMName", "Model", "site")


def _eager(main: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    return main.collect() if isinstance(main, pl.LazyFrame) else main


def _by_zone(
    frame: pl.DataFrame, tz: str, compute: Callable[[pl.DataFrame, str], pl.DataFrame]
) -> pl.DataFrame:
    """``compute(frame, tz)``; with ``tz="site"``, once per machine zone, concatenated."""
    if tz != SITE_TZ:
        return compute(frame, tz)
    if "MachineId" not in frame.columns or frame.is_empty():
        return compute(frame, "UTC")
    zones = (
        frame.select(pl.col("MachineId").unique())
        .join(machine_zones(frame), on="MachineId", how="left")
        .with_columns(pl.col("tz").fill_null("UTC"))
    )
    parts = [
        compute(frame.filter(pl.col("MachineId").is_in(ids.get_column("MachineId"))), zone)
        for (zone,), ids in zones.group_by("tz", maintain_order=True)
    ]
    return pl.concat(parts, how="vertical_relaxed")


def with_identity(out: pl.DataFrame, main: pl.DataFrame, cutoff: str | None) -> pl.DataFrame:
    """``out`` (keyed by ``MachineId``) with :data:`IDENTITY` columns as known at ``cutoff``
    (a UTC time column of ``out``; ``None``: the end of ``main``), by receipt time."""
    if "MachineId" not in main.columns or "MachineId" not in out.columns:
        return out.with_columns(pl.lit(None, pl.String).alias(c) for c in IDENTITY)
    known = assign_sites(main) if "site" not in main.columns else main
    cols = [c for c in IDENTITY if c in known.columns]
    order = "kafka_timestamp" if "kafka_timestamp" in known.columns else None
    timeline = known.select(
        "MachineId",
        (pl.col(order).cast(TIME) if order else pl.lit(None, TIME)).alias("_known_at"),
        *(pl.col(c).cast(pl.String) for c in cols),
    ).filter(pl.col("MachineId").is_not_null())
    timeline = timeline.with_row_index("_row").sort("_known_at", "_row", nulls_last=False)
    timeline = timeline.with_columns(pl.col(cols).forward_fill().over("MachineId")).drop("_row")
    if cutoff is None or order is None:
        last = timeline.group_by("MachineId", maintain_order=True).agg(pl.col(cols).last())
        joined = out.join(last, on="MachineId", how="left")
    else:
        joined = (
            out.with_row_index("_out")
            .sort(cutoff)
            .join_asof(
                timeline.drop_nulls("_known_at").sort("_known_at"),
                left_on=cutoff,
                right_on="_known_at",
                by="MachineId",
                strategy="backward",
                # Sorted by the cut-off overall; polars cannot check that within groups.
                check_sortedness=False,
            )
            .sort("_out")
            .drop("_out", "_known_at")
        )
    missing = [pl.lit(None, pl.String).alias(c) for c in IDENTITY if c not in joined.columns]
    joined = joined.with_columns(missing) if missing else joined
    return joined.select(*(c for c in out.columns if c not in IDENTITY), *IDENTITY)


def _both(main: pl.DataFrame | pl.LazyFrame, every: str, tz: str) -> pl.LazyFrame:
    lf = _counter_frame(main)
    op = _allocated(lf, OPERATING, every, tz, "operating_hours")
    idle = _allocated(lf, IDLE, every, tz, "idle_hours")
    return op.join(
        idle, on=["MachineId", "bucket_start"], how="full", coalesce=True, suffix="_idle"
    ).with_columns(pl.coalesce("bucket_end", "bucket_end_idle").alias("bucket_end"))


def daily_hours(
    main: pl.DataFrame | pl.LazyFrame, *, tz: str = "UTC", shift_hours: float | None = None
) -> pl.DataFrame:
    """Operating and idle hours per machine and local calendar day.

    Columns: ``MachineId``, ``date`` (Date, local to the row's ``tz``), ``operating_hours``,
    ``idle_hours``, ``utilisation``, ``tz``, then the identity columns ``EquipmentID``,
    ``OEMName``, ``Model``, ``site`` as known at the end of that day (later data never
    rewrites a past day). ``tz`` is an IANA zone, or ``"site"``: each machine in its own local
    zone (:func:`tu_analytics.sites.machine_zones`; UTC for a machine never seen with a
    position). Hours are the increase of ``CumulativeOperatingHours`` /
    ``CumulativeIdleHours`` spread pro rata over the days each interval between two readings
    overlaps. A day appears when a valid interval of either counter overlaps it; an hour
    column is null when its counter has no valid interval on that day (unknown, not zero).

    ``utilisation = operating_hours / denominator``. The denominator is the length of the
    calendar day (24 h; 23 or 25 h on DST changes in ``tz``): share of *all* time the machine
    ran, the only choice that needs no knowledge of the site's working hours. With
    ``shift_hours`` (e.g. 8) it is ``operating_hours / shift_hours``: share of a planned
    shift, which can exceed 1 on overtime days and is not clipped. Days only partly covered by
    readings (the first and last day of a window) are still divided by the full denominator.
    """
    if shift_hours is not None and shift_hours <= 0:
        raise ValueError("shift_hours must be positive")
    frame = _eager(main)
    days = _by_zone(frame, tz, lambda part, zone: _daily_one(part, zone, shift_hours))
    return with_identity(days, frame, "_cutoff").drop("_cutoff").sort("MachineId", "date")


def _daily_one(main: pl.DataFrame, tz: str, shift_hours: float | None) -> pl.DataFrame:
    both = _both(main, "1d", tz)
    day_hours = (
        pl.col("bucket_end") - pl.col("bucket_start")
    ).dt.total_milliseconds() * HOURS_PER_MS
    denominator = day_hours if shift_hours is None else pl.lit(float(shift_hours))
    return (
        both.select(
            "MachineId",
            pl.col("bucket_start").dt.date().alias("date"),
            "operating_hours",
            "idle_hours",
            (pl.col("operating_hours") / denominator).alias("utilisation"),
            pl.lit(tz).alias("tz"),
            pl.col("bucket_end").dt.convert_time_zone("UTC").cast(TIME).alias("_cutoff"),
        )
        .sort("MachineId", "date")
        .collect()
    )


def fleet_utilisation(
    main: pl.DataFrame | pl.LazyFrame, *, every: str | timedelta = "1h"
) -> pl.DataFrame:
    """Fleet-wide operating and idle hours per UTC bucket of length ``every``.

    Columns: ``bucket_start``, ``machines_reporting``, ``operating_hours``, ``idle_hours``,
    ``utilisation``. ``machines_reporting`` counts machines whose operating-hours counter
    covers the bucket (a valid interval between two of its readings overlaps it). That is
    the population whose hours are in ``operating_hours``, so ``utilisation =
    operating_hours / (machines_reporting * bucket length in hours)`` compares like with like
    (a machine read every 2 h still counts in the hourly bucket between its readings).
    ``idle_hours`` sums the idle counter over machines whose idle counter covers the bucket.
    Buckets run densely from the first to the last covered one; a bucket nobody covers has
    ``machines_reporting == 0`` and null hours and utilisation.
    """
    step = duration_string(every)
    both = _both(main, step, "UTC")
    per_bucket = both.group_by("bucket_start").agg(
        (pl.col("_operating_hours_cov") > 0).sum().cast(pl.UInt32).alias("machines_reporting"),
        pl.col("operating_hours").filter(pl.col("_operating_hours_cov") > 0).sum().alias("_op"),
        pl.col("idle_hours").filter(pl.col("_idle_hours_cov") > 0).sum().alias("_idle"),
        (pl.col("_idle_hours_cov") > 0).sum().alias("_idle_n"),
    )
    covered = per_bucket.filter((pl.col("machines_reporting") > 0) | (pl.col("_idle_n") > 0))
    grid = (
        covered.select(
            pl.datetime_ranges(
                pl.col("bucket_start").min(), pl.col("bucket_start").max(), interval=step
            ).alias("bucket_start")
        )
        .explode("bucket_start")
        .drop_nulls()
    )  # no covered bucket at all: no rows
    bucket_hours = (
        pl.col("bucket_start").dt.offset_by(step) - pl.col("bucket_start")
    ).dt.total_milliseconds() * HOURS_PER_MS
    machines = pl.col("machines_reporting").fill_null(0)
    return (
        grid.join(covered, on="bucket_start", how="left")
        .select(
            "bucket_start",
            machines.alias("machines_reporting"),
            pl.when(machines > 0).then(pl.col("_op")).alias("operating_hours"),
            pl.when(pl.col("_idle_n") > 0).then(pl.col("_idle")).alias("idle_hours"),
            pl.when(machines > 0)
            .then(pl.col("_op") / (machines * bucket_hours))
            .alias("utilisation"),
        )
        .sort("bucket_start")
        .collect()
    )


def hour_of_day(main: pl.DataFrame | pl.LazyFrame, *, tz: str = "UTC") -> pl.DataFrame:
    """Operating hours per machine and local hour of day (heatmap data).

    Columns: ``MachineId``, ``hour`` (Int32, 0–23 in ``tz``), ``operating_hours``: the total
    over the window of operating hours that fell in that clock hour, after spreading each
    interval pro rata over the hours it overlaps. Dense: 24 rows for every machine with at
    least one valid operating-hours interval (an hour it never ran in is 0). Then ``tz`` and
    the identity columns (``EquipmentID``, ``OEMName``, ``Model``, ``site``) as last known in
    the frame. ``tz="site"``: each machine's own local hours (see :func:`daily_hours`).
    """
    frame = _eager(main)
    hours = _by_zone(frame, tz, _hour_of_day_one)
    return with_identity(hours, frame, None).sort("MachineId", "hour")


def _hour_of_day_one(main: pl.DataFrame, tz: str) -> pl.DataFrame:
    lf = _counter_frame(main)
    per_hour = _allocated(lf, OPERATING, "1h", tz, "operating_hours").filter(
        pl.col("_operating_hours_cov") > 0
    )
    totals = per_hour.group_by(
        "MachineId", pl.col("bucket_start").dt.hour().cast(pl.Int32).alias("hour")
    ).agg(pl.col("operating_hours").sum())
    machines = per_hour.select("MachineId").unique()
    hours = pl.LazyFrame({"hour": pl.int_range(0, 24, dtype=pl.Int32, eager=True)})
    return (
        machines.join(hours, how="cross")
        .join(totals, on=["MachineId", "hour"], how="left")
        .with_columns(pl.col("operating_hours").fill_null(0.0), pl.lit(tz).alias("tz"))
        .sort("MachineId", "hour")
        .collect()
    )


def machine_state(
    main: pl.DataFrame | pl.LazyFrame,
    *,
    now: datetime | None = None,
    stale_after: str | timedelta = "2h",
    threshold: float = STATE_THRESHOLD,
) -> pl.DataFrame:
    """Latest activity state per machine as of ``now``.

    Columns: ``MachineId``, ``state`` (``"operating"``, ``"idle"``, ``"off"`` or
    ``"no recent data"``), ``last_seen`` (latest measurement time of any field, Datetime UTC).

    Only data known at ``now`` is used: measured at or before ``now`` and received
    (``kafka_timestamp``) at or before ``now``. ``now`` defaults to the newest
    ``kafka_timestamp`` in the frame, i.e. the moment the window was complete, so the result
    is a pure function of the frame (pass the wall clock for a live view).

    Rules (help-centre activity states, utilisation_notes.md §4, 70 % revision):

    1. ``last_seen`` older than ``now - stale_after`` (or no measurement at all) →
       ``"no recent data"``. Trackunit learns a per-machine timeout; we use one fixed one.
    2. For each counter take its last interval (last two readings, rules of
       :func:`~tu_analytics.counters.counter_deltas`). It counts as *growing* when its end
       reading is within ``stale_after`` of ``now`` (devices may report counters only on
       change, so an old interval says nothing about now), it is neither a reset nor a jump,
       and ``delta >= threshold * elapsed``.
    3. Idle counter growing → ``"idle"``; else operating counter growing → ``"operating"``;
       else ``"off"``. Idle is checked first because idle time is usually also counted as
       operating (engine-on) time, so an idling machine grows both counters; when the
       counters are disjoint both cannot reach 70 % at once and the order is moot.
    """
    if not 0 < threshold <= 1:
        raise ValueError("threshold must be in (0, 1]")
    step = duration_string(stale_after)
    lf = _counter_frame(main)
    schema = lf.collect_schema()
    time_cols = [
        c for c, t in schema.items() if c.endswith("_datetime") and isinstance(t, pl.Datetime)
    ]
    as_of = _as_of(lf, time_cols) if now is None else now
    now_lit = pl.lit(as_of).cast(TIME) if as_of is not None else pl.lit(None, dtype=TIME)
    cutoff = now_lit.dt.offset_by(f"-{step}")
    known = lf.filter(
        pl.col("kafka_timestamp").is_null() | (pl.col("kafka_timestamp").cast(TIME) <= now_lit)
    )
    seen = known.group_by("MachineId").agg(
        pl.max_horizontal(
            [pl.when(pl.col(c).cast(TIME) <= now_lit).then(pl.col(c).cast(TIME)) for c in time_cols]
        )
        .max()
        .alias("last_seen")
    )
    grows = _Growth(known, now_lit, cutoff, threshold)
    out = (
        seen.filter(pl.col("MachineId").is_not_null())
        .join(grows.last_interval(IDLE, "_idle"), on="MachineId", how="left")
        .join(grows.last_interval(OPERATING, "_op"), on="MachineId", how="left")
        .select(
            "MachineId",
            pl.when(pl.col("last_seen").is_null() | (pl.col("last_seen") < cutoff))
            .then(pl.lit("no recent data"))
            .when(pl.col("_idle").fill_null(value=False))
            .then(pl.lit("idle"))
            .when(pl.col("_op").fill_null(value=False))
            .then(pl.lit("operating"))
            .otherwise(pl.lit("off"))
            .alias("state"),
            "last_seen",
        )
        .sort("MachineId")
    )
    return out.collect()


def _as_of(lf: pl.LazyFrame, time_cols: list[str]) -> datetime | None:
    """The moment a frame was complete: its newest receipt time, else its newest measurement."""
    as_of: datetime | None = lf.select(pl.col("kafka_timestamp").cast(TIME).max()).collect().item()
    if as_of is None and time_cols:
        as_of = (
            lf.select(pl.max_horizontal([pl.col(c).cast(TIME) for c in time_cols]).max())
            .collect()
            .item()
        )
    return as_of


@dataclass(frozen=True)
class _Growth:
    """Rule 2 of :func:`machine_state`: whether a counter's last interval is growing."""

    known: pl.LazyFrame
    now: pl.Expr
    cutoff: pl.Expr
    threshold: float

    def last_interval(self, counter: str, name: str) -> pl.LazyFrame:
        """``MachineId, <name>``: the counter's last known interval grew at the threshold rate."""
        # Readings measured after ``now`` are not known yet.
        past = self.known.filter(pl.col(f"{counter}_datetime").cast(TIME) <= self.now)
        last = (
            counter_deltas(past, counter)
            .sort("MachineId", "end")
            .group_by("MachineId")
            .agg(pl.all().last())
        )
        ok = (
            (pl.col("end") >= self.cutoff)
            & ~pl.col("reset")
            & ~pl.col("gap")
            & (pl.col("delta") >= self.threshold * pl.col("elapsed_hours"))
        )
        return last.select("MachineId", ok.alias(name))


def last_operating(main: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """``MachineId, last_operating``: the end of each machine's last interval in which its
    operating-hours counter grew (UTC); machines whose counter never grew are left out."""
    deltas = counter_deltas(_counter_frame(main), OPERATING)
    return (
        deltas.filter(pl.col("delta") > 0)
        .group_by("MachineId")
        .agg(pl.col("end").max().cast(TIME).alias("last_operating"))
        .sort("MachineId")
        .collect()
    )


def _local(moment: datetime, tz: str, zones: pl.DataFrame, machine: str | None) -> str:
    if tz == SITE_TZ:
        found = zones.filter(pl.col("MachineId") == machine).get_column("tz")
        zone = found.item() if found.len() else "UTC"
        return f"{moment.astimezone(ZoneInfo(zone)):%a %d %b %H:%M} local ({zone})"
    return f"{moment.astimezone(ZoneInfo(tz)):%a %d %b %H:%M %Z}"


def activity_summary(
    main: pl.DataFrame | pl.LazyFrame,
    *,
    now: datetime | None = None,
    tz: str = "UTC",
    stale_after: str | timedelta = "2h",
) -> str:
    """One true sentence about the fleet's activity as of ``now``, for views and reports.

    ``"3 of 33 machines operating, 1 idle, 29 off"``, or when nobody works
    ``"all 33 machines off since Fri 27 Nov 16:05 CET"`` (the last time any operating-hours
    counter grew, in ``tz``; with ``tz="site"`` in that machine's local time).
    """
    frame = _eager(main)
    states = machine_state(frame, now=now, stale_after=stale_after)
    n = states.height
    if n == 0:
        return "no machine in this data"
    counts = dict(states.group_by("state").len().iter_rows())
    busy = counts.get("operating", 0) + counts.get("idle", 0)
    noun = "machine" if n == 1 else "machines"
    if busy:
        parts = [f"{counts[s]} {s}" for s in ("idle", "off", "no recent data") if counts.get(s)]
        return ", ".join([f"{counts.get('operating', 0)} of {n} {noun} operating", *parts])
    last = last_operating(frame).sort("last_operating").tail(1)
    quiet = "off" if not counts.get("no recent data") else "off or silent"
    if last.is_empty():
        return f"all {n} {noun} {quiet}: no operating hours in this data"
    machine, moment = last.row(0)
    zones = machine_zones(frame) if tz == SITE_TZ else pl.DataFrame()
    return f"all {n} {noun} {quiet} since {_local(moment, tz, zones, machine)}"
