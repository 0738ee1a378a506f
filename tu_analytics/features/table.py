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
* **Identity** (``EquipmentID``, ``OEMName``, ``Model`` when the input has them) is the latest
  value received by the row's cut-off, carried forward.
* **Site** (always present) is :mod:`tu_analytics.sites`' rule applied to the position and
  City readings (``Location_datetime``, ``LocationAddress_datetime``) as of the cut-off: each
  reading counts from the cut-off of its availability bucket, like the as-of features, for
  this machine and for the other machines whose City names a place within ~1 km. Other
  machines count only through a small anchors table of the whole input
  (:func:`feature_site_anchors`), so machine groups (and Spark) get the whole frame's sites.
* Every row has ``cutoff_time = bucket_end + allowed_latency``: the moment it is final.

The two rules (latency, boundary) can be switched off only through ``_RULES``, for the
mutation tests that prove the leakage tests would notice.
Records with a null ``MachineId`` or ``kafka_timestamp`` cannot be placed in time and are
ignored. Consequence (tested, bit for bit): adding or changing data measured after bucket
``t`` or received after its cut-off leaves every feature of every bucket up to ``t``
unchanged. Float reductions are made order-stable for this (see
:func:`~tu_analytics.features._pit._ordered`).

Rows: for every machine, every bucket from its first bucket with any data up to the last
bucket with data in the whole input, or up to ``end`` when given (dense, so silent hours show
up with their staleness). With ``end`` fixed, machines interact only through the small site
anchors table (computed from the whole input first), so the table can be built machine group
by machine group (``group_size``) with exactly the same result.

Layout: this module holds the public entry point and the rule switches (``_RULES``); the
pieces live in private modules it re-exports from: ``_pit`` (rules, clock, readings),
``_geo`` (geohash, distance), ``_blocks`` (the features), ``_assembly`` (grid, groups,
derived columns) and ``_result`` (:class:`FeatureTable` and its Parquet file).
"""

from __future__ import annotations

from datetime import datetime, timedelta

import polars as pl

from tu_analytics.counters import duration_string
from tu_analytics.features._assembly import _build as _build
from tu_analytics.features._assembly import _Grid as _Grid
from tu_analytics.features._assembly import _grouped, _prepared
from tu_analytics.features._blocks import COUNTERS as COUNTERS
from tu_analytics.features._blocks import IDENTITY as IDENTITY
from tu_analytics.features._blocks import MAX_GPS_SPEED_KMH as MAX_GPS_SPEED_KMH
from tu_analytics.features._blocks import STATS as STATS
from tu_analytics.features._blocks import site_anchors_of
from tu_analytics.features._geo import geohash_code, geohash_string
from tu_analytics.features._pit import KEYS as KEYS
from tu_analytics.features._pit import _Clock as _Clock
from tu_analytics.features._pit import _latency_string
from tu_analytics.features._pit import _Rules as _Rules
from tu_analytics.features._result import META_SEMANTICS as META_SEMANTICS
from tu_analytics.features._result import FeatureTable

__all__ = [
    "FeatureTable",
    "feature_site_anchors",
    "feature_table",
    "geohash_code",
    "geohash_string",
]
# ``X as X``: re-exported, as before the split: the constants, and the private pieces
# cutoffs.py and the mutation tests use.

#: The point-in-time rules in force; only the mutation tests replace this (monkeypatch).
_RULES = _Rules()


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
    site_anchors: pl.DataFrame | None = None,
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

    ``site_anchors``: :func:`feature_site_anchors` of the whole input (same ``every`` and
    ``allowed_latency``), when ``main`` is only a part of it (Spark passes them to each
    machine group); by default they come from ``main``.

    Columns, definitions and as-of rules: ``FeatureTable.dictionary`` (and
    :mod:`tu_analytics.features.dictionary`).
    """
    if site_radius_m <= 0:
        raise ValueError("site_radius_m must be positive")
    clock = _Clock(duration_string(every), _latency_string(allowed_latency), _RULES)
    if cutoffs is not None:
        from tu_analytics.features.cutoffs import cutoff_rows

        if clock.latency is not None:
            raise ValueError("cutoff rows use no allowed_latency: the cutoff is the cut-off")
        if site_anchors is not None:
            raise ValueError("cutoff rows take their site anchors from main")
        return cutoff_rows(
            main, cutoffs, every=clock.step, fault_codes=fault_codes, site_radius_m=site_radius_m
        )
    grid = _Grid(start, end)
    if group_size is not None:
        return _grouped(main, fault_codes, clock, grid, site_radius_m, group_size, site_anchors)
    return _build(main, fault_codes, clock, grid, site_radius_m, lazy=lazy, anchors=site_anchors)


def feature_site_anchors(
    main: pl.DataFrame | pl.LazyFrame,
    *,
    every: str | timedelta = "1h",
    allowed_latency: str | timedelta | None = None,
) -> pl.DataFrame:
    """The site anchors (:func:`tu_analytics.sites.site_anchors`) of ``main``'s position and
    City readings as a feature table with this ``every`` and ``allowed_latency`` sees them:
    each known from the cut-off of the first bucket it is available for. Anchors of machine
    groups merge with :func:`tu_analytics.sites.merge_anchors`."""
    clock = _Clock(duration_string(every), _latency_string(allowed_latency), _RULES)
    return site_anchors_of(_prepared(main)[0], clock).collect()
