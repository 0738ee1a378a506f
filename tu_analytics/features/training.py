"""Training sets: labels joined point in time, purged and embargoed time splits, Parquet.

``training_set(features, labels, split=TimeSplit(...))``:

* **Point-in-time join** (as Feast's ``get_historical_features``): each label row
  ``(MachineId, label_time)`` gets the latest feature row of its machine that was final by
  then (``cutoff_time <= label_time``), optionally no older than ``ttl``. Label rows with no
  such feature row are dropped: there was nothing to predict from.
* **Time split with purge and embargo** (López de Prado): rows go to ``train``,
  ``validation`` or ``test`` by ``label_time``. A training row's label window
  ``[label_time, label_end)`` must end by ``validation_start`` (purge), and a validation
  row's by ``test_start``; the first ``embargo`` after each boundary is left out. So the gap
  between the last training label time and the first validation label time is at least
  ``horizon + embargo``; ``embargo`` defaults to the horizon.
* Machine identity (``MachineId`` and, when the features have them, ``EquipmentID``,
  ``OEMName``, ``Model``, ``site`` as known at the row's cut-off) travels with every row.

``TrainingSet.write_parquet`` stores the feature dictionary, the semantics version and the
split in the file's metadata. (Delta comes with the archive.)
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import polars as pl

from tu_analytics.counters import TIME
from tu_analytics.features.table import FeatureTable

__all__ = ["SPLITS", "TimeSplit", "TrainingSet", "labels_from", "training_set"]

_M = "MachineId"
SPLITS = ("train", "validation", "test")
_META_SPLIT = "tu_analytics.split"


@dataclass(frozen=True)
class TimeSplit:
    """Boundaries of a forward time split; ``horizon`` is the label horizon."""

    validation_start: datetime
    test_start: datetime
    horizon: timedelta
    embargo: timedelta | None = None

    def __post_init__(self) -> None:
        if self.validation_start >= self.test_start:
            raise ValueError("validation_start must be before test_start")
        if self.horizon <= timedelta(0):
            raise ValueError("horizon must be positive")
        if self.embargo is not None and self.embargo < timedelta(0):
            raise ValueError("embargo must not be negative")

    @property
    def gap(self) -> timedelta:
        return self.horizon if self.embargo is None else self.embargo

    def assign(self) -> pl.Expr:
        """``split`` for rows with ``label_time`` and ``label_end``; null: purged/embargoed."""
        t, end = pl.col("label_time"), pl.col("label_end")
        val, test = _lit(self.validation_start), _lit(self.test_start)
        return (
            pl.when(end <= val)
            .then(pl.lit("train"))
            .when((t >= val + self.gap) & (end <= test))
            .then(pl.lit("validation"))
            .when(t >= test + self.gap)
            .then(pl.lit("test"))
            .alias("split")
        )

    def to_json(self) -> str:
        return json.dumps(
            {
                "validation_start": self.validation_start.isoformat(),
                "test_start": self.test_start.isoformat(),
                "horizon_s": self.horizon.total_seconds(),
                "embargo_s": self.gap.total_seconds(),
            }
        )


def _lit(t: datetime) -> pl.Expr:
    return pl.lit(t).cast(TIME)


@dataclass(frozen=True)
class TrainingSet:
    """Rows with ``split`` in :data:`SPLITS`; ``dropped`` counts purged/embargoed rows."""

    frame: pl.DataFrame
    features: tuple[str, ...]
    labels: tuple[str, ...]
    split: TimeSplit
    table: FeatureTable
    dropped: int

    def part(self, name: str) -> pl.DataFrame:
        """The rows of one split."""
        if name not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {name!r}")
        return self.frame.filter(pl.col("split") == name)

    def write_parquet(self, path: str | Path) -> None:
        """Write the rows; dictionary, semantics version and split go in the metadata."""
        meta = self.table.metadata()
        meta[_META_SPLIT] = self.split.to_json()
        meta["tu_analytics.labels"] = json.dumps(list(self.labels))
        self.frame.write_parquet(path, metadata=meta)


def labels_from(
    frame: pl.DataFrame | pl.LazyFrame,
    label: str,
    horizon: timedelta,
    *,
    time: str = "bucket_end",
) -> pl.DataFrame:
    """A labels frame (``MachineId``, ``label_time``, ``label_end``, ``label``) from a frame
    with a label column, e.g. the output of ``future_target`` or ``fault_within``, whose label
    window starts at ``time`` and lasts ``horizon``."""
    return (
        frame.lazy()
        .select(
            pl.col(_M).cast(pl.String),
            pl.col(time).cast(TIME).alias("label_time"),
            (pl.col(time).cast(TIME) + horizon).alias("label_end"),
            pl.col(label),
        )
        .collect()
    )


def training_set(
    features: FeatureTable,
    labels: pl.DataFrame | pl.LazyFrame,
    *,
    split: TimeSplit,
    ttl: timedelta | None = None,
) -> TrainingSet:
    """Join ``labels`` (``MachineId``, ``label_time``, optional ``label_end`` (default
    ``label_time + split.horizon``), label columns) to ``features`` point in time and split
    them by time. See the module docstring for the rules."""
    feats = features.collect().frame
    assert isinstance(feats, pl.DataFrame)
    lab = labels.lazy().collect()
    missing = [c for c in (_M, "label_time") if c not in lab.columns]
    if missing:
        raise KeyError(f"labels lack column(s) {missing}")
    if "label_end" not in lab.columns:
        lab = lab.with_columns((pl.col("label_time").cast(TIME) + split.horizon).alias("label_end"))
    label_cols = tuple(c for c in lab.columns if c not in (_M, "label_time", "label_end"))
    clash = [c for c in label_cols if c in feats.columns]
    if clash:
        raise ValueError(f"label column(s) {clash} are also feature columns")
    left = lab.with_columns(
        pl.col(_M).cast(pl.String), pl.col("label_time").cast(TIME), pl.col("label_end").cast(TIME)
    ).sort("label_time")
    right = feats.with_columns(pl.col("cutoff_time").alias("_known")).sort("_known")
    joined = left.join_asof(
        right,
        left_on="label_time",
        right_on="_known",
        by=_M,
        strategy="backward",
        tolerance=ttl,
        check_sortedness=False,
    ).filter(pl.col("_known").is_not_null())
    with_split = joined.with_columns(split.assign())
    kept = with_split.filter(pl.col("split").is_not_null())
    names = tuple(c for c in feats.columns)
    frame = kept.select(*names, "label_time", "label_end", *label_cols, "split").sort(
        "label_time", _M
    )
    return TrainingSet(
        frame=frame,
        features=names,
        labels=label_cols,
        split=split,
        table=features,
        dropped=with_split.height - kept.height,
    )
