"""Point in time, exactly: the counter boundary rule, immutability over late data, the mutation
check, the machine-group path, identity as of the cut-off, and cutoff rows.

Immutability (issue 12): for random cut times T over data where 10% of the records arrive
2-6 h late, every closed row (``cutoff_time <= T``) of a table built from the records received
by T equals, every feature and null for null, the same row of a table built from the records
received by T + 24 h. The mutation tests turn off one rule at a time and demand that these
checks then fail, so they can never pass vacuously.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from tu_analytics.counters import TIME
from tu_analytics.features import FeatureTable, feature_table
from tu_analytics.features import table as table_module

LATENCY = "15m"
START = datetime(2024, 3, 4, tzinfo=UTC)  # a Monday
DAYS = 3

SCHEMA: dict[str, pl.DataType] = {
    "kafka_timestamp": TIME,
    "MachineId": pl.String(),
    "EquipmentID": pl.String(),
    "OEMName": pl.String(),
    "Model": pl.String(),
    "City": pl.String(),
    "LocationAddress_datetime": TIME,
    "CumulativeOperatingHours": pl.Float64(),
    "CumulativeOperatingHours_datetime": TIME,
    "EngineTotalFuelUsed": pl.Float64(),
    "EngineTotalFuelUsed_datetime": TIME,
    "BatteryPotential": pl.Float64(),
    "BatteryPotential_datetime": TIME,
    "Latitude": pl.Float64(),
    "Longitude": pl.Float64(),
    "Location_datetime": TIME,
}


def hm(h: int, m: int = 0) -> datetime:
    return START + timedelta(hours=h, minutes=m)


def frame(rows: list[dict[str, Any]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=SCHEMA)


def eager(t: FeatureTable) -> pl.DataFrame:
    assert isinstance(t.frame, pl.DataFrame)
    return t.frame


# --------------------------------------------------------------------------- late data


def _machine_records(r: random.Random, i: int) -> Iterator[dict[str, Any]]:
    """One machine: a record every 1-6 min on shift (06-17 UTC), heartbeats every 30-70 min
    otherwise; 10% of records arrive 2-6 h late (out of coverage), the rest within seconds.
    Machine i sits in the 0.01° cell north of machine i - 1."""
    hours, fuel, t = 1000.0 * (i + 1), 50_000.0, START
    equipment = f"EX-{i:03d}"
    while t < START + timedelta(days=DAYS):
        working = 6 <= t.hour < 17 and r.random() < 0.9
        step = timedelta(minutes=r.uniform(1, 6) if working else r.uniform(30, 70))
        if working:
            hours += step.total_seconds() / 3600 * r.uniform(0.5, 1.0)
            fuel += step.total_seconds() / 3600 * 12
        t += step
        if i == 0 and t > START + timedelta(days=1, hours=10):
            equipment = "EX-000-renamed"  # identity changes once: past rows must not follow
        late = r.random() < 0.10
        delay = timedelta(hours=r.uniform(2, 6)) if late else timedelta(seconds=r.uniform(1, 30))
        counter_t = t - timedelta(minutes=r.choice([0, 0, 0, 3]))  # some stale repeats
        yield {
            "kafka_timestamp": t + delay,
            "MachineId": f"m{i}",
            "EquipmentID": equipment,
            "OEMName": "Volvo" if r.random() < 0.95 else None,
            "Model": f"EC{200 + i}",
            # m0..m2 name their town now and then; m3 only has m2's 1 km away; m4 none
            "City": f"Town-{i % 2}" if i < 3 and r.random() < 0.2 else None,
            "LocationAddress_datetime": t,
            "CumulativeOperatingHours": round(hours, 4),
            "CumulativeOperatingHours_datetime": counter_t,
            "EngineTotalFuelUsed": round(fuel, 1) if r.random() < 0.7 else None,
            "EngineTotalFuelUsed_datetime": t,
            "BatteryPotential": r.uniform(24, 28) if r.random() < 0.5 else None,
            "BatteryPotential_datetime": t,
            "Latitude": 55.0 + i * 0.01 + r.uniform(0, 0.001),
            "Longitude": 10.0 + r.uniform(0, 0.001),
            "Location_datetime": t,
        }


def late_data(seed: int, machines: int = 5) -> pl.DataFrame:
    r = random.Random(seed)
    rows = [rec for i in range(machines) for rec in _machine_records(r, i)]
    return frame(rows).sort("kafka_timestamp")


def received_by(main: pl.DataFrame, t: datetime) -> pl.DataFrame:
    return main.filter(pl.col("kafka_timestamp") <= t)


def closed(t: FeatureTable, cut: datetime) -> pl.DataFrame:
    return eager(t).filter(pl.col("cutoff_time") <= cut)


def changed_rows(main: pl.DataFrame, cut: datetime, **kw: Any) -> int:
    """Closed rows at ``cut`` that differ between windows ending at cut and cut + 24 h."""
    short = closed(feature_table(received_by(main, cut), **kw), cut)
    long = closed(feature_table(received_by(main, cut + timedelta(hours=24)), **kw), cut)
    keys = ["MachineId", "bucket_start"]
    both = short.join(long, on=keys, how="full", suffix="_long", coalesce=True)
    differs = pl.any_horizontal(
        [~pl.col(c).eq_missing(pl.col(f"{c}_long")) for c in short.columns if c not in keys]
    )
    return both.filter(differs).height


def cut_times(seed: int, n: int) -> list[datetime]:
    r = random.Random(seed)
    span = int((DAYS * 24 - 4) * 3600)
    return [START + timedelta(hours=2, seconds=r.randrange(span)) for _ in range(n)]


def test_late_data_generator_is_late() -> None:
    main = late_data(1)
    late = main.filter(
        pl.col("kafka_timestamp") - pl.col("Location_datetime") >= timedelta(hours=2)
    ).height
    assert 0.07 < late / main.height < 0.13


@pytest.mark.parametrize("seed", range(4))
def test_closed_rows_never_change_when_late_data_arrives(seed: int) -> None:
    main = late_data(seed)
    for cut in cut_times(seed, 3):
        assert changed_rows(main, cut, allowed_latency=LATENCY) == 0, cut


def cutoff_frame(main: pl.DataFrame, seed: int, n: int) -> pl.DataFrame:
    r = random.Random(seed)
    machines = main["MachineId"].unique().sort().to_list()
    times = cut_times(seed + 100, n)
    return pl.DataFrame(
        {"MachineId": [r.choice(machines) for _ in times], "cutoff_time": times},
        schema={"MachineId": pl.String(), "cutoff_time": TIME},
    )


def test_cutoff_rows_never_change_when_late_data_arrives() -> None:
    main = late_data(7)
    cutoffs = cutoff_frame(main, 7, 6)
    for cut in cut_times(70, 2):
        mine = cutoffs.filter(pl.col("cutoff_time") <= cut)
        short = feature_table(received_by(main, cut), cutoffs=mine)
        long = feature_table(received_by(main, cut + timedelta(hours=24)), cutoffs=mine)
        assert_frame_equal(eager(short), eager(long), check_exact=True)


def test_cutoff_rows_equal_bucket_rows_on_the_grid() -> None:
    main = late_data(3)
    grid = eager(feature_table(main))
    picked = grid.filter(pl.col("bucket_start").dt.hour().is_in([3, 9, 14])).head(12)
    cuts = picked.select("MachineId", pl.col("bucket_end").alias("cutoff_time"))
    rows = eager(feature_table(main, cutoffs=cuts))
    assert_frame_equal(rows, picked, check_exact=True)


# --------------------------------------------------------------------------- boundary rule


def boundary_case() -> pl.DataFrame:
    """r0 08:10 100.0, r1 08:50 100.5 (on time), r2 09:40 101.0 received 09:41; a late r3
    measured 08:30 (100.25) arrives at 12:00."""

    def rec(v: float, m: datetime, k: datetime) -> dict[str, Any]:
        return {
            "MachineId": "m1",
            "kafka_timestamp": k,
            "CumulativeOperatingHours": v,
            "CumulativeOperatingHours_datetime": m,
        }

    return frame(
        [
            rec(100.0, hm(8, 10), hm(8, 11)),
            rec(100.5, hm(8, 50), hm(8, 51)),
            rec(101.0, hm(9, 40), hm(9, 41)),
            rec(100.25, hm(8, 30), hm(12)),
        ]
    )


def hours_of(t: FeatureTable) -> list[float | None]:
    return eager(t).sort("bucket_start")["operating_hours"].to_list()


def test_counter_reading_after_a_bucket_never_allocates_hours_inside_it() -> None:
    """The issue's suspected bug, on hand-made data: r2 (09:40) must not move any of the
    r1 -> r2 increase into the 08:00 bucket, and the late r3 must not change it either."""
    main = boundary_case()
    at_cut = feature_table(received_by(main, hm(9, 20)), allowed_latency=LATENCY)
    later = feature_table(main, allowed_latency=LATENCY)
    # 08: r0 -> r1 = 0.5, known at its cut-off 09:15 (r0 has no earlier reading)
    assert hours_of(at_cut) == pytest.approx([0.5])
    # 08 unchanged; 09: the whole r1 -> r2 interval (0.5), which spans 09:00, lands in the
    # bucket of r2; r3 (late) is never used, so nothing of r0 -> r1 is re-split
    assert hours_of(later)[:2] == pytest.approx([0.5, 0.5])
    # the sum over buckets is still the counter's increase
    assert sum(h or 0 for h in hours_of(later)) == pytest.approx(1.0)


# --------------------------------------------------------------------------- mutation check


def leaks(main: pl.DataFrame, cuts: list[datetime]) -> int:
    return sum(changed_rows(main, c, allowed_latency=LATENCY) for c in cuts)


@pytest.mark.parametrize(
    "rules",
    [table_module._Rules(latency=False), table_module._Rules(boundary=False)],
    ids=["latency-rule-off", "boundary-rule-off"],
)
def test_leakage_checks_fail_when_a_rule_is_disabled(
    monkeypatch: pytest.MonkeyPatch, rules: Any
) -> None:
    main = boundary_case()
    cuts = cut_times(5, 4)
    data = late_data(5)
    # with the rules on, neither check sees leakage ...
    assert leaks(data, cuts) == 0
    assert changed_rows(main, hm(9, 20), allowed_latency=LATENCY) == 0
    # ... and with either rule off, both do
    monkeypatch.setattr(table_module, "_RULES", rules)
    assert leaks(data, cuts) > 0
    assert changed_rows(main, hm(9, 20), allowed_latency=LATENCY) > 0


# --------------------------------------------------------------------------- grid and groups


def test_machine_groups_equal_the_whole_frame() -> None:
    main = late_data(11, machines=7)
    end = START + timedelta(days=DAYS, hours=6)
    whole = feature_table(main, allowed_latency=LATENCY, end=end)
    for size in (1, 3):
        grouped = feature_table(main.lazy(), allowed_latency=LATENCY, end=end, group_size=size)
        assert_frame_equal(eager(grouped), eager(whole), check_exact=True)
    # sites too, including those another group's machine named (m3 has only m2's town)
    sites = eager(whole).group_by("MachineId").agg(pl.col("site").drop_nulls().unique())
    assert set(sites.filter(pl.col("MachineId") == "m3")["site"].explode()) >= {"Town-0"}
    assert eager(whole).filter(pl.col("latitude").is_not_null())["site"].null_count() == 0
    # the grid: every machine runs to the bucket before `end`; `start` trims rows only
    assert (
        eager(whole).group_by("MachineId").agg(pl.col("bucket_end").max())["bucket_end"].to_list()
        == [end] * 7
    )
    trimmed = feature_table(main, allowed_latency=LATENCY, start=hm(30), end=end)
    assert_frame_equal(eager(trimmed), eager(whole).filter(pl.col("bucket_start") >= hm(30)))
    with pytest.raises(ValueError, match="end="):
        feature_table(main.lazy(), group_size=2)


# --------------------------------------------------------------------------- identity


def test_identity_is_as_known_at_the_cut_off() -> None:
    main = late_data(2)
    t = eager(feature_table(main, allowed_latency=LATENCY)).filter(pl.col("MachineId") == "m0")
    names = t.select("cutoff_time", "EquipmentID", "OEMName", "Model", "site")
    renamed = names.filter(pl.col("EquipmentID") == "EX-000-renamed")["cutoff_time"].min()
    # rows before the rename keep the old name; from the first row whose cut-off saw a renamed
    # record onwards, the new one (receipt order, so a late old-name record can't undo it)
    assert renamed is not None
    assert set(names.filter(pl.col("cutoff_time") < renamed)["EquipmentID"].drop_nulls()) == {
        "EX-000"
    }
    assert set(names.filter(pl.col("cutoff_time") >= renamed)["EquipmentID"]) <= {
        "EX-000-renamed",
        "EX-000",
    }
    assert names["Model"].drop_nulls().unique().to_list() == ["EC200"]
    # m0's own town from the first cut-off that saw it; before, m1's (1 km away) or the map's
    own = names.filter(pl.col("site") == "Town-0")["cutoff_time"].min()
    assert own is not None
    assert set(names.filter(pl.col("cutoff_time") >= own)["site"]) == {"Town-0"}
    assert set(names.filter(pl.col("cutoff_time") < own)["site"].drop_nulls()) <= {
        "Town-1",
        "55.0°N 10.0°E",
    }
    # without identity columns in the input there are none in the table, but always a site
    bare = feature_table(main.drop("EquipmentID", "OEMName", "Model", "City"))
    assert "EquipmentID" not in eager(bare).columns
    assert "site" in bare.dictionary["name"].to_list()
    assert eager(bare)["site"].null_count() == 0


@pytest.mark.parametrize(
    "rules",
    [table_module._Rules(latency=False), table_module._Rules(boundary=False)],
    ids=["latency-rule-off", "boundary-rule-off"],
)
def test_hand_made_leakage_test_fails_when_a_rule_is_disabled(
    monkeypatch: pytest.MonkeyPatch, rules: Any
) -> None:
    from test_features import test_leakage_hand_made

    test_leakage_hand_made()
    monkeypatch.setattr(table_module, "_RULES", rules)
    with pytest.raises(AssertionError):
        test_leakage_hand_made()


def test_cutoff_rows_bad_input_and_rows_before_any_data() -> None:
    main = boundary_case()
    cuts = pl.DataFrame(
        {"MachineId": ["m1", "m1"], "cutoff_time": [hm(7), hm(9, 45)], "label": [1, 2]},
        schema_overrides={"cutoff_time": TIME},
    )
    rows = eager(feature_table(main, cutoffs=cuts))
    # 07:00 is before any data: a row of unknowns, never zeros; extra columns are carried
    assert rows["operating_hours"].to_list()[0] is None
    assert rows["record_count"].to_list()[0] is None
    assert rows["label"].to_list() == [1, 2]
    # 09:45: window [08:45, 09:45), received by 09:45: r1 (08:50) and r2 (09:40) close
    # intervals in it: r0 -> r1 (0.5) + r1 -> r2 (0.5); the late r3 (received 12:00) is unseen
    assert rows["operating_hours"].to_list()[1] == pytest.approx(1.0)
    assert rows["bucket_start"].to_list() == [hm(6), hm(8, 45)]
    with pytest.raises(ValueError, match="latency"):
        feature_table(main, cutoffs=cuts, allowed_latency="15m")
    with pytest.raises(ValueError, match="fixed-length"):
        feature_table(main, cutoffs=cuts, every="1mo")
    with pytest.raises(KeyError):
        feature_table(main, cutoffs=cuts.drop("cutoff_time"))


# --------------------------------------------------------------------------- site


def site_case() -> pl.DataFrame:
    """m1 parked in Nordhavn, reporting its position every 10 min from 06:00 to 12:00 and
    never a City; m2, 100 m away, names the place "Nordhavn" at 09:05 (received 09:06)."""

    def pos(m: str, t: datetime, lat: float, lon: float) -> dict[str, Any]:
        k = t + timedelta(minutes=1)
        return {"MachineId": m, "kafka_timestamp": k, "Latitude": lat, "Longitude": lon,
                "Location_datetime": t}

    rows = [pos("m1", hm(6, 10 * i), 55.7113, 12.5955) for i in range(37)]
    named = {**pos("m2", hm(9, 5), 55.7121, 12.5960), "City": "Nordhavn",
             "LocationAddress_datetime": hm(9, 5)}
    return frame([*rows, named])


def test_a_city_named_later_nearby_never_changes_a_past_site() -> None:
    main = site_case()
    before = eager(feature_table(received_by(main, hm(9))))
    after = eager(feature_table(main, end=hm(12, 10)))
    m1 = after.filter(pl.col("MachineId") == "m1")
    # until 09:00 the map's name; from the bucket whose cut-off saw m2's City, that City
    assert m1.filter(pl.col("cutoff_time") <= hm(9))["site"].unique().to_list() == ["København"]
    assert m1.filter(pl.col("cutoff_time") >= hm(10))["site"].unique().to_list() == ["Nordhavn"]
    assert_frame_equal(closed(feature_table(main), hm(9)), before, check_exact=True)
    # the same in machine groups of one: m2's City reaches m1 through the anchors
    grouped = feature_table(main.lazy(), end=hm(12, 10), group_size=1)
    assert_frame_equal(eager(grouped), after, check_exact=True)
