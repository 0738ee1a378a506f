"""Snapshots that verify themselves, and the window's own helpers, on hand-built frames."""

from __future__ import annotations

import json
import shutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest

from tu_analytics import (
    NaiveTimeWarning,
    SnapshotError,
    SnapshotIntegrityError,
    Window,
    WindowSpec,
    load_snapshot,
)

T0 = datetime(2026, 11, 27, 8, tzinfo=UTC)
TS = pl.Datetime("ms", "UTC")


def _window(rows: int = 40) -> Window:
    hours = [T0 - timedelta(hours=3) + timedelta(minutes=10 * i) for i in range(rows)]
    main = pl.DataFrame(
        {
            "partition": [i % 2 for i in range(rows)],
            "offset": list(range(rows)),
            "kafka_timestamp": [T0 + timedelta(seconds=i) for i in range(rows)],
            "MachineId": [f"m{i % 4}" for i in range(rows)],
            "Location_datetime": [T0 + timedelta(seconds=i) for i in range(rows)],
            "CumulativeOperatingHours": [100.0 + i for i in range(rows)],
            "CumulativeOperatingHours_datetime": hours,
            "EngineRunning": [i % 3 == 0 for i in range(rows)],
            "EngineRunning_datetime": hours,
            "FuelLevel": [None if i % 2 else 50.0 - i for i in range(rows)],
            "FuelLevel_datetime": [None if i % 2 else h for i, h in enumerate(hours)],
            "MachineState": [["on", "off", "idle"][i % 3] for i in range(rows)],
            "MachineState_datetime": hours,
            "DefLevel": [None] * rows,
            "DefLevel_datetime": [None] * rows,
        },
        schema_overrides={
            "kafka_timestamp": TS, "Location_datetime": TS, "DefLevel": pl.Float64,
            "CumulativeOperatingHours_datetime": TS, "EngineRunning_datetime": TS,
            "FuelLevel_datetime": TS, "MachineState_datetime": TS, "DefLevel_datetime": TS,
        },
    )
    units = pl.DataFrame(
        {
            "insight": ["CumulativeOperatingHours", "EngineRunning", "FuelLevel", "MachineState",
                        "DefLevel", "NotInMain"],
            "unit": ["h", None, "%", None, "%", "l"],
            "value_type": ["double", "boolean", "double", "enum", "double", "double"],
        }
    )
    spec = WindowSpec(
        topic="t", format="insights", start=T0, end=T0 + timedelta(hours=1), machines=None,
        offsets={0: (0, 20), 1: (0, 20)}, schema_ids=(1,), created=T0, records=rows, errors=0,
        lateness_ms=300_000, max_disorder_ms=1200, covered_end=T0 + timedelta(minutes=30),
        dedupe=True,
    )
    faults = pl.DataFrame({"partition": [0], "offset": [0], "CodeIdentifier": ["P0001"]})
    errors = pl.DataFrame({"partition": [], "offset": []}, schema={"partition": pl.Int32,
                                                                   "offset": pl.Int64})
    return Window(spec=spec, main=main, errors=errors, units=units, long={"fault_codes": faults})


# -- by_measurement_time, insights(), drop_null_insights() -----------------------------------


def test_an_insight_name_means_its_own_clock() -> None:
    win = _window()
    # Regression: every insight is a column, so the name used to be compared as a float.
    by_name = win.by_measurement_time("CumulativeOperatingHours")
    by_clock = win.by_measurement_time("CumulativeOperatingHours_datetime")
    assert by_name.height == 40
    assert by_name.equals(by_clock)
    part = win.by_measurement_time(
        "CumulativeOperatingHours", T0 - timedelta(hours=2), "2026-11-27T07:00Z"
    )
    assert part.height == 6
    assert part["CumulativeOperatingHours_datetime"].min() == T0 - timedelta(hours=2)
    with pytest.raises(KeyError, match="neither a time column"):
        win.by_measurement_time("MachineId")
    with pytest.raises(KeyError, match="not a column"):
        win.by_measurement_time("Nope")


def test_by_measurement_time_reads_naive_bounds_as_local(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    monkeypatch.setenv("TZ", "Europe/Copenhagen")
    time.tzset()
    try:
        win = _window()
        with pytest.warns(NaiveTimeWarning) as rec:
            got = win.by_measurement_time("FuelLevel", datetime(2026, 11, 27, 7))  # 06:00Z
        assert rec[0].filename == __file__
        assert got["FuelLevel_datetime"].min() == datetime(2026, 11, 27, 6, tzinfo=UTC)
    finally:
        monkeypatch.undo()
        time.tzset()


def test_insights_lists_what_is_present_with_unit_coverage_and_range() -> None:
    ins = _window().insights()
    assert ins["insight"].to_list() == [
        "CumulativeOperatingHours", "EngineRunning", "FuelLevel", "MachineState"
    ]
    row = {r["insight"]: r for r in ins.iter_rows(named=True)}
    hours = row["CumulativeOperatingHours"]
    assert (hours["unit"], hours["rows"], hours["coverage"]) == ("h", 40, 1.0)
    assert (hours["min"], hours["max"], hours["distinct"]) == (100.0, 139.0, 40)
    assert hours["first"] == T0 - timedelta(hours=3)
    fuel = row["FuelLevel"]
    assert (fuel["rows"], fuel["coverage"], fuel["min"], fuel["max"]) == (20, 0.5, 12.0, 50.0)
    assert (row["EngineRunning"]["min"], row["EngineRunning"]["max"]) == (0.0, 1.0)
    state = row["MachineState"]
    assert (state["min"], state["max"], state["distinct"]) == (None, None, 3)


def test_insights_of_an_empty_window_is_an_empty_typed_frame() -> None:
    win = _window()
    win.main = win.main.clear()
    ins = win.insights()
    assert ins.height == 0
    assert ins.schema["coverage"] == pl.Float64


def test_repr_says_when_the_read_stopped_short() -> None:
    assert "(read only to 2026-11-27T08:30:00+00:00)" in repr(_window())


def test_drop_null_insights_is_an_option_not_the_default() -> None:
    win = _window()
    assert "DefLevel" in win.main.columns  # the full, stable schema stays the default
    slim = win.drop_null_insights()
    assert "DefLevel" not in slim.main.columns
    assert "DefLevel_datetime" not in slim.main.columns
    assert set(win.main.columns) - set(slim.main.columns) == {"DefLevel", "DefLevel_datetime"}
    assert slim.main.height == win.main.height
    assert slim.spec == win.spec


def test_to_pandas_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "pandas" else real(name, *a)
    )
    with pytest.raises(ModuleNotFoundError, match=r"pip install 'tu-analytics\[pandas\]'"):
        _window().to_pandas()


def test_to_pandas_converts_when_the_extra_is_installed() -> None:
    # The dev extra includes the pandas extra, so this runs wherever the tests do.
    df = _window().to_pandas()
    assert len(df) == 40
    assert df["CumulativeOperatingHours"].iloc[0] == 100.0


# -- snapshots --------------------------------------------------------------------------------


@pytest.fixture
def snap(tmp_path: Path) -> Path:
    return _window().save(tmp_path / "snap")


def _manifest(snap: Path) -> dict:
    return json.loads((snap / "window.json").read_text())


def test_round_trip_with_checksums_and_the_new_spec_fields(snap: Path) -> None:
    meta = _manifest(snap)
    assert meta["snapshot_version"] == 2
    assert meta["frames"]["main"]["rows"] == 40
    assert len(meta["frames"]["main"]["sha256"]) == 64
    back = load_snapshot(snap)
    win = _window()
    assert back.spec == win.spec
    assert (back.spec.lateness_ms, back.spec.max_disorder_ms, back.spec.dedupe) == (
        300_000, 1200, True
    )
    assert back.spec.covered_end == T0 + timedelta(minutes=30)
    for name, df in win.frames.items():
        assert back.frames[name].equals(df), name


def test_version_1_snapshots_still_load(snap: Path) -> None:
    meta = _manifest(snap)
    meta["snapshot_version"] = 1
    del meta["frames"]
    for key in ("lateness_ms", "max_disorder_ms", "covered_end", "dedupe"):
        del meta["spec"][key]
    (snap / "window.json").write_text(json.dumps(meta))
    back = load_snapshot(snap)
    assert (back.spec.lateness_ms, back.spec.covered_end, back.spec.dedupe) == (0, None, False)
    assert back.main.height == 40


def test_truncated_frame_is_detected(snap: Path) -> None:
    data = (snap / "main.parquet").read_bytes()
    (snap / "main.parquet").write_bytes(data[: len(data) // 2])
    with pytest.raises(SnapshotIntegrityError, match="sha256") as info:
        load_snapshot(snap)
    assert info.value.check == "sha256"


def test_a_shorter_but_valid_frame_is_detected(snap: Path) -> None:
    # A truncated *table* (10 of 40 rows) is still a valid Parquet file.
    pl.read_parquet(snap / "main.parquet").head(10).write_parquet(snap / "main.parquet")
    with pytest.raises(SnapshotIntegrityError):
        load_snapshot(snap)


def test_swapped_frames_are_detected(snap: Path) -> None:
    (snap / "main.parquet").rename(snap / "tmp.parquet")
    (snap / "errors.parquet").rename(snap / "main.parquet")
    (snap / "tmp.parquet").rename(snap / "errors.parquet")
    with pytest.raises(SnapshotIntegrityError):
        load_snapshot(snap)


def test_every_flipped_byte_is_detected(snap: Path, tmp_path: Path) -> None:
    data = (snap / "units.parquet").read_bytes()
    for i in range(0, len(data), max(1, len(data) // 25)):
        bad = tmp_path / f"flip{i}"
        shutil.copytree(snap, bad)
        flipped = bytearray(data)
        flipped[i] ^= 0x01
        (bad / "units.parquet").write_bytes(bytes(flipped))
        with pytest.raises(SnapshotError):
            load_snapshot(bad)


def test_rows_that_disagree_with_the_manifest_are_detected(snap: Path) -> None:
    meta = _manifest(snap)
    meta["frames"]["main"]["rows"] = 41
    (snap / "window.json").write_text(json.dumps(meta))
    with pytest.raises(SnapshotIntegrityError, match="rows"):
        load_snapshot(snap)


@pytest.mark.parametrize("name", ["../../x", "../outside", "/etc/passwd", "a/b", "..", ""])
def test_frame_names_never_leave_the_snapshot(snap: Path, name: str) -> None:
    outside = snap.parent / "outside.parquet"
    shutil.copy(snap / "main.parquet", outside)
    meta = _manifest(snap)
    meta["long"].append(name)
    meta["frames"][name] = meta["frames"]["main"]
    (snap / "window.json").write_text(json.dumps(meta))
    with pytest.raises(SnapshotError, match="not a frame name"):
        load_snapshot(snap)


def test_a_symlink_out_of_the_snapshot_is_refused(snap: Path) -> None:
    outside = snap.parent / "elsewhere.parquet"
    shutil.move(snap / "fault_codes.parquet", outside)
    (snap / "fault_codes.parquet").symlink_to(outside)
    with pytest.raises(SnapshotError, match="outside"):
        load_snapshot(snap)


@pytest.mark.parametrize(
    "text",
    [
        "{not json",
        "",
        "[]",
        "null",
        '"window"',
        '{"snapshot_version": 2}',
        '{"snapshot_version": "2"}',
        '{"snapshot_version": true}',
        '{"snapshot_version": 99, "spec": {}}',
        '{"snapshot_version": 2, "long": [], "frames": {}, "spec": {}}',
        '{"snapshot_version": 2, "long": 5, "frames": {}, "spec": {}}',
        '{"snapshot_version": 1, "long": [], "spec": []}',
        '{"snapshot_version": 1, "long": [], "spec": null}',
    ],
)
def test_malformed_manifests_raise_snapshot_error(snap: Path, text: str) -> None:
    (snap / "window.json").write_text(text)
    with pytest.raises(SnapshotError):
        load_snapshot(snap)


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("spec", "start"), "yesterday"),
        (("spec", "start"), 5),
        (("spec", "offsets"), {"0": [1]}),
        (("spec", "offsets"), {"x": [0, 1]}),
        (("spec", "offsets"), []),
        (("spec", "records"), "many"),
        (("spec", "machines"), 7),
        (("spec", "covered_end"), "later"),
        (("frames", "main"), "abc"),
        (("frames", "main"), {"rows": True, "sha256": None}),
        (("frames",), ["main"]),
        (("long",), {"fault_codes": 1}),
        (("long",), [7]),
        (("spec",), None),
    ],
)
def test_malformed_fields_raise_snapshot_error(
    snap: Path, path: tuple[str, ...], value: object
) -> None:
    meta = _manifest(snap)
    target = meta
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    (snap / "window.json").write_text(json.dumps(meta))
    with pytest.raises(SnapshotError):
        load_snapshot(snap)


def test_missing_frame_file_is_a_snapshot_error(snap: Path) -> None:
    (snap / "errors.parquet").unlink()
    with pytest.raises(SnapshotError, match=r"errors\.parquet"):
        load_snapshot(snap)


def _paths(node: object, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(node, dict):
        for k, v in node.items():
            out += _paths(v, (*prefix, k))
    elif isinstance(node, list):
        for i, v in enumerate(node):
            out += _paths(v, (*prefix, i))
    return out


def test_any_mangled_manifest_loads_or_raises_snapshot_error(snap: Path) -> None:
    import random

    rng = random.Random(15)
    original = _manifest(snap)
    junk = [None, 0, -1, 1.5, 1e308, "", "x", "../x", [], [1, 2], {}, {"a": 1}, True]
    paths = [p for p in _paths(original) if p]
    refused = 0
    for _ in range(400):
        meta = json.loads(json.dumps(original))
        for _ in range(rng.randint(1, 3)):
            path = rng.choice(paths)
            target = meta
            try:
                for key in path[:-1]:
                    target = target[key]
                if rng.random() < 0.2 and isinstance(target, dict):
                    del target[path[-1]]
                else:
                    target[path[-1]] = rng.choice(junk)
            except (KeyError, IndexError, TypeError):
                continue  # an earlier change removed this path
        (snap / "window.json").write_text(json.dumps(meta))
        try:
            load_snapshot(snap)
        except SnapshotError:
            refused += 1
    # Any other exception type fails the test above; most of these manifests are refused.
    assert refused > 300, refused


def test_every_single_flipped_byte_of_a_frame_is_detected(snap: Path) -> None:
    file = snap / "errors.parquet"
    data = file.read_bytes()
    for i in range(len(data)):
        flipped = bytearray(data)
        flipped[i] ^= 0x80
        file.write_bytes(bytes(flipped))
        with pytest.raises(SnapshotError):
            load_snapshot(snap)
    file.write_bytes(data)
    assert load_snapshot(snap).errors.height == 0
