"""training_set: point-in-time label join, purged and embargoed time splits, Parquet metadata.

Hand-made feature rows (one machine, hourly buckets 00..23 on 2024-01-01) and labels whose
split is worked out in the comments.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from tu_analytics.counters import TIME
from tu_analytics.features import (
    SEMANTICS_VERSION,
    FeatureTable,
    TimeSplit,
    feature_dictionary,
    labels_from,
    training_set,
)

H = timedelta(hours=1)


def at(hour: float) -> datetime:
    return datetime(2024, 1, 1, tzinfo=UTC) + timedelta(hours=hour)


def features(
    machines: tuple[str, ...] = ("m1",), latency: timedelta = timedelta(0)
) -> FeatureTable:
    rows = [
        {
            "MachineId": m,
            "bucket_start": at(h),
            "bucket_end": at(h + 1),
            "bucket_hours": 1.0,
            "cutoff_time": at(h + 1) + latency,
            "EquipmentID": f"EX-{m}",
            "operating_hours": float(h),
        }
        for m in machines
        for h in range(24)
    ]
    frame = pl.DataFrame(
        rows,
        schema_overrides={"bucket_start": TIME, "bucket_end": TIME, "cutoff_time": TIME},
    )
    return FeatureTable(frame, feature_dictionary(frame.columns), "1h", None)


def labels(times: list[float], machine: str = "m1") -> pl.DataFrame:
    return pl.DataFrame(
        {
            "MachineId": [machine] * len(times),
            "label_time": [at(t) for t in times],
            "label_y": list(range(len(times))),
        },
        schema_overrides={"label_time": TIME},
    )


def split_of(ts: object) -> dict[datetime, str]:
    frame = ts.frame  # type: ignore[attr-defined]
    return dict(zip(frame["label_time"].to_list(), frame["split"].to_list(), strict=True))


def test_purge_and_embargo_on_hand_made_rows() -> None:
    # validation from 10:00, test from 18:00; labels look 2 h ahead; embargo = horizon = 2 h
    split = TimeSplit(at(10), at(18), horizon=2 * H)
    ts = training_set(features(), labels([float(h) for h in range(1, 24)]), split=split)
    got = split_of(ts)
    # train: label window [t, t+2h) ends by 10:00 -> t <= 08:00 (09:00 would overlap validation)
    assert [h for h in range(1, 24) if got.get(at(h)) == "train"] == list(range(1, 9))
    # validation: t >= 10:00 + 2h embargo and t + 2h <= 18:00 -> 12..16
    assert [h for h in range(1, 24) if got.get(at(h)) == "validation"] == [12, 13, 14, 15, 16]
    # test: t >= 18:00 + 2h -> 20..23
    assert [h for h in range(1, 24) if got.get(at(h)) == "test"] == [20, 21, 22, 23]
    # purged or embargoed: 9, 10, 11 and 17, 18, 19
    assert ts.dropped == 6
    # no training label window overlaps the validation period; the gap is >= the horizon
    train, val = ts.part("train"), ts.part("validation")
    assert train["label_end"].max() <= at(10)  # type: ignore[operator]
    assert val["label_time"].min() - train["label_time"].max() >= split.horizon  # type: ignore[operator]
    assert val["label_end"].max() <= ts.part("test")["label_time"].min()  # type: ignore[operator]


def test_explicit_embargo_and_label_end() -> None:
    # zero embargo: validation starts right at 10:00; an explicit label_end overrides horizon
    split = TimeSplit(at(10), at(18), horizon=H, embargo=timedelta(0))
    lab = labels([8, 9, 10, 17]).with_columns(
        pl.Series("label_end", [at(9), at(11), at(11), at(18)]).cast(TIME)
    )
    got = split_of(training_set(features(), lab, split=split))
    # 08 ends 09 -> train; 09 ends 11 > 10 -> purged; 10 -> validation; 17 ends 18 -> validation
    assert got == {at(8): "train", at(10): "validation", at(17): "validation"}


def test_point_in_time_join_uses_only_rows_final_by_label_time() -> None:
    # features are final 30 min after bucket end (allowed_latency 30m)
    feats = features(latency=timedelta(minutes=30))
    split = TimeSplit(at(12), at(20), horizon=H)
    ts = training_set(feats, labels([5.0, 5.5, 5.75]), split=split)
    frame = ts.frame.sort("label_time")
    # 05:00: the 04:00 bucket (end 05:00) is final only at 05:30 -> the 03:00 bucket
    # 05:30: the 04:00 bucket is final exactly now; 05:45 still the 04:00 bucket
    assert frame["bucket_start"].to_list() == [at(3), at(4), at(4)]
    assert frame["operating_hours"].to_list() == [3.0, 4.0, 4.0]
    # identity travels with the row
    assert frame["EquipmentID"].to_list() == ["EX-m1"] * 3
    # a ttl drops labels whose latest feature row is too old
    lab = labels([5.0, 30.0])
    kept = training_set(feats, lab, split=TimeSplit(at(40), at(50), horizon=H), ttl=3 * H)
    assert kept.frame["label_time"].to_list() == [at(5)]


def test_machines_do_not_mix_and_labels_without_features_drop() -> None:
    feats = features(("m1", "m2"))
    lab = pl.concat([labels([6.0], "m1"), labels([7.0], "m2"), labels([6.0], "m9")])
    ts = training_set(feats, lab, split=TimeSplit(at(12), at(20), horizon=H))
    rows = {(r["MachineId"], r["bucket_start"]) for r in ts.frame.iter_rows(named=True)}
    assert rows == {("m1", at(5)), ("m2", at(6))}


def test_parquet_carries_dictionary_semantics_and_split(tmp_path: Path) -> None:
    split = TimeSplit(at(10), at(18), horizon=2 * H)
    ts = training_set(features(), labels([3.0, 14.0, 21.0]), split=split)
    path = tmp_path / "train.parquet"
    ts.write_parquet(path)
    meta = pl.read_parquet_metadata(path)
    assert meta["tu_analytics.semantics_version"] == str(SEMANTICS_VERSION)
    assert json.loads(meta["tu_analytics.split"])["horizon_s"] == 7200
    back = FeatureTable.read_parquet(path)
    assert back.dictionary["name"].to_list() == list(ts.features)
    assert pl.read_parquet(path)["split"].to_list() == ["train", "validation", "test"]


def test_labels_from_and_bad_input() -> None:
    frame = features().frame
    assert isinstance(frame, pl.DataFrame)
    lab = labels_from(frame.with_columns(pl.col("operating_hours").alias("y")), "y", 2 * H)
    assert lab.columns == ["MachineId", "label_time", "label_end", "y"]
    assert (lab["label_end"] - lab["label_time"]).unique().to_list() == [2 * H]
    with pytest.raises(ValueError, match="before"):
        TimeSplit(at(10), at(10), horizon=H)
    with pytest.raises(ValueError, match="horizon"):
        TimeSplit(at(10), at(11), horizon=timedelta(0))
    no_time = pl.DataFrame({"MachineId": ["m1"]})
    with pytest.raises(KeyError):
        training_set(features(), no_time, split=TimeSplit(at(1), at(2), H))
    clash = labels([1.0]).rename({"label_y": "operating_hours"})
    with pytest.raises(ValueError, match="also feature"):
        training_set(features(), clash, split=TimeSplit(at(1), at(2), H))


def test_end_to_end_on_a_feature_table_with_late_data() -> None:
    from test_features_pit import LATENCY, START, late_data

    from tu_analytics.features import feature_table, future_target

    table = feature_table(late_data(4), allowed_latency=LATENCY)
    target = future_target(table, "operating_hours", horizon=3, agg="sum")
    lab = labels_from(target, "label_operating_hours_sum_h3", 3 * H).drop_nulls()
    split = TimeSplit(START + timedelta(hours=36), START + timedelta(hours=54), horizon=3 * H)
    ts = training_set(table, lab, split=split)
    train, val, test = (ts.part(n) for n in ("train", "validation", "test"))
    assert min(train.height, val.height, test.height) > 0
    assert train["label_end"].max() <= split.validation_start  # type: ignore[operator]
    assert val["label_time"].min() >= split.validation_start + split.gap  # type: ignore[operator]
    assert val["label_end"].max() <= split.test_start  # type: ignore[operator]
    # every row was final before its label window opened, and carries the machine's identity
    assert (ts.frame["cutoff_time"] <= ts.frame["label_time"]).all()
    assert ts.frame["EquipmentID"].null_count() == 0
    assert ts.frame["site"].null_count() == 0
    assert {"Town-0", "Town-1"} <= set(ts.frame["site"]) <= {"Town-0", "Town-1", "55.0°N 10.0°E"}
