"""Edges of the window against the real sandbox: an insight's own clock, machines by name,
naive local times, insights(), verified snapshots and the CLI's failures (issues 9, 15, 10)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import warnings
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import polars as pl
import pytest

import tu_analytics
from tu_analytics import NaiveTimeWarning, SnapshotIntegrityError, UnknownMachineWarning

CLOCK = "CumulativeOperatingHours_datetime"
CPH = ZoneInfo("Europe/Copenhagen")


@pytest.fixture(scope="module")
def full(sandbox):
    """Every record of the backfill up to 10 minutes ago (a range the forwarder has passed)."""
    end = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    return sandbox.connect().window(start=end - timedelta(days=3), end=end, progress=False)


@pytest.fixture
def copenhagen(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "Europe/Copenhagen")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def test_by_measurement_time_of_an_insight_uses_its_own_clock(full) -> None:
    # Regression: by_measurement_time("CumulativeOperatingHours") returned 0 rows over 3 days.
    measured = full.main.filter(pl.col(CLOCK).is_not_null())
    assert measured.height > 0
    by_name = full.by_measurement_time("CumulativeOperatingHours")
    assert by_name.height == measured.height
    assert by_name.equals(full.by_measurement_time(CLOCK))
    assert by_name[CLOCK].is_sorted()
    times = measured[CLOCK].sort()
    a, b = times[len(times) // 4], times[3 * len(times) // 4]
    b = max(b, a + timedelta(milliseconds=1))
    part = full.by_measurement_time("CumulativeOperatingHours", a, b)
    expected = measured.filter((pl.col(CLOCK) >= a) & (pl.col(CLOCK) < b))
    assert part.height == expected.height > 0
    assert set(part["offset"]) == set(expected["offset"])


def test_machines_by_equipment_id_and_machine_id(sandbox, full) -> None:
    named = full.main.filter(pl.col("EquipmentID").is_not_null())
    row = named.row(0, named=True)
    mid, name = row["MachineId"], row["EquipmentID"]
    conn = sandbox.connect()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnknownMachineWarning)
        by_name = conn.window(full.spec.start, full.spec.end, machines=[name.lower()],
                              progress=False)
        by_id = conn.window(full.spec.start, full.spec.end, machines=mid, progress=False)
    assert set(by_name.main["MachineId"]) == {mid}
    assert by_name.main.height == full.main.filter(pl.col("MachineId") == mid).height
    assert by_name.main.equals(by_id.main)


def test_an_unknown_machine_warns_with_close_matches(sandbox, full) -> None:
    start = full.spec.end - timedelta(hours=6)
    # A machine that reported in these 6 hours, so the close match is in the window.
    mid = full.main.filter(pl.col("kafka_timestamp") >= start)["MachineId"].drop_nulls()[0]
    typo = mid[:-1] + ("0" if mid[-1] != "0" else "1")
    with pytest.warns(UnknownMachineWarning, match="did you mean") as rec:
        win = sandbox.connect().window(start, full.spec.end, machines=[typo, "NO-SUCH-MACHINE"],
                                       progress=False)
    assert win.main.height == 0
    w = rec[0].message
    assert isinstance(w, UnknownMachineWarning)
    assert w.unknown == tuple(sorted((typo, "NO-SUCH-MACHINE")))  # sorted: the same every run
    assert mid in w.close[typo]
    assert rec[0].filename == __file__


@pytest.mark.usefixtures("copenhagen")
def test_naive_times_are_local_and_resolved_once(sandbox, full) -> None:
    b = full.spec.end
    a = b - timedelta(hours=3)
    naive_a = a.astimezone(CPH).replace(tzinfo=None)
    naive_b = b.astimezone(CPH).replace(tzinfo=None)
    conn = sandbox.connect()
    with pytest.warns(NaiveTimeWarning) as rec:
        local = conn.window(naive_a, naive_b.isoformat(), progress=False)
    assert len(rec) == 2
    assert all(r.filename == __file__ for r in rec)
    assert (local.spec.start, local.spec.end) == (a, b)
    aware = conn.window(a, b, progress=False)
    assert local.main.equals(aware.main)


def test_insights_and_the_drop_null_option_on_real_data(full) -> None:
    ins = full.insights()
    row = ins.filter(pl.col("insight") == "CumulativeOperatingHours").row(0, named=True)
    assert row["unit"]
    assert 0 < row["coverage"] <= 1
    assert row["rows"] == full.main[CLOCK].is_not_null().sum()
    assert row["min"] <= row["max"]
    assert ins["rows"].min() > 0
    slim = full.drop_null_insights()
    assert slim.main.height == full.main.height
    assert len(slim.main.columns) < len(full.main.columns)
    kept = [c for c in full.units["insight"] if c in slim.main.columns]
    assert sorted(kept) == sorted(ins["insight"])
    assert full.main.select(pl.col(kept).count()).row(0) == tuple(ins.sort(
        pl.col("insight").replace_strict({k: i for i, k in enumerate(kept)}))["rows"])


def test_a_real_snapshot_verifies_itself(full, tmp_path: Path) -> None:
    full.save(tmp_path / "snap")
    back = tu_analytics.load_snapshot(tmp_path / "snap")
    assert back.main.equals(full.main)
    assert back.spec == full.spec
    data = (tmp_path / "snap" / "main.parquet").read_bytes()
    (tmp_path / "snap" / "main.parquet").write_bytes(data[:-100])
    with pytest.raises(SnapshotIntegrityError):
        tu_analytics.load_snapshot(tmp_path / "snap")


def _cli(sandbox, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tu_analytics.cli", *args],
        env={**os.environ, **sandbox.env(), **env}, capture_output=True, text=True,
        timeout=120, check=False,
    )


@pytest.mark.parametrize(
    ("argv", "env"),
    [
        (("--last", "2"), {}),
        (("--last", "1000000000w"), {}),
        (("--last", "100000w"), {}),
        (("--start", "1900-01-01T00:00Z", "--end", "1900-01-02T00:00Z"), {}),
        (("--last", "1h"), {"TU_SCHEMA_REGISTRY_URL": "not a url"}),
        (("--last", "1h", "--machine", "x"), {"TU_BOOTSTRAP_SERVERS": "a b"}),
    ],
)
def test_cli_bad_input_is_an_error_line_and_rc_2(
    sandbox, tmp_path: Path, argv: tuple[str, ...], env: dict[str, str]
) -> None:
    out = _cli(sandbox, "window", *argv, "-o", str(tmp_path / "x.parquet"), **env)
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith("error: ")
    assert "Traceback" not in out.stderr
    debug = _cli(sandbox, "--debug", "window", *argv, "-o", str(tmp_path / "x.parquet"), **env)
    assert debug.returncode == 2
    assert "Traceback (most recent call last)" in debug.stderr


def test_cli_naive_times_flags_and_machine_names(sandbox, full, tmp_path: Path) -> None:
    b = full.spec.end
    a = b - timedelta(hours=2)
    recent = full.main.filter(pl.col("kafka_timestamp") >= a, pl.col("EquipmentID").is_not_null())
    name = recent["EquipmentID"][0]
    local = [t.astimezone(CPH).replace(tzinfo=None).isoformat() for t in (a, b)]
    out = _cli(sandbox, "window", "--start", local[0], "--end", local[1], "--machine", name,
               "--lateness", "2m", "--max-records", "1000000", "--max-bytes", "4G",
               "--no-progress", "-o", str(tmp_path / "snap"), TZ="Europe/Copenhagen")
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("has no UTC offset") == 2
    assert f"range:    [{a.isoformat()} .. {b.isoformat()})" in out.stdout
    snap = tu_analytics.load_snapshot(tmp_path / "snap")
    assert set(snap.main["EquipmentID"].drop_nulls()) == {name}
    mid = recent["MachineId"][0]
    assert snap.main.height == full.main.filter(
        pl.col("kafka_timestamp") >= a, pl.col("MachineId") == mid
    ).height


@pytest.mark.parametrize(
    "kwargs",
    [
        {"last": "100000w"},
        {"last": "1000000000w"},
        {"last": 2},
        {"start": "1900-01-01T00:00Z", "end": "1900-01-02T00:00Z"},
        {"start": datetime(1969, 12, 31, tzinfo=UTC), "end": "2026-01-01T00:00Z"},
    ],
)
def test_bad_ranges_are_configuration_errors_before_any_read(sandbox, kwargs) -> None:
    conn = sandbox.connect()
    t0 = time.monotonic()
    with pytest.raises(tu_analytics.ConfigurationError):
        conn.window(progress=False, **kwargs)
    assert time.monotonic() - t0 < 10


def test_a_malformed_registry_url_is_refused_at_connect(sandbox) -> None:
    with pytest.raises(tu_analytics.ConfigurationError, match="not an http"):
        sandbox.connect(schema_registry_url="not a url")
