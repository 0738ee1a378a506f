"""Benchmark: hourly point-in-time features, 30 days x the default fleet (60 machines).

    .venv/bin/python benchmarks/bench_features.py                      # 2,000,000 rows, 3 rounds
    .venv/bin/python benchmarks/bench_features.py --baseline-src /tmp/old --json out.json

The synthetic frame follows docs/frames.md: Kafka columns, identity, location, and every insight
of the catalogue (value + ``_datetime``; ``--narrow`` keeps only the ones features read). It is
built with numpy directly: working shifts, realistic sparsity (each record fills a subset of
fields), repeated stale values, out-of-order arrival with a tail of late records, counter resets
and offset jumps, and a ``fault_codes`` long frame. It is written to Parquet once.

Each build runs in a fresh interpreter (clean peak RSS), rounds interleaved so every variant sees
the same machine load:

* ``new``: ``feature_table(main, every=...)`` on the frame in memory;
* ``baseline`` (with ``--baseline-src DIR``): the same with an older ``tu_analytics`` from DIR,
  e.g. ``git archive <rev> tu_analytics | tar -x -C DIR``;
* ``grouped``: ``feature_table(pl.scan_parquet(...), end=..., group_size=N)``, machine group by
  machine group over a LazyFrame: its peak RSS is what months of history need.

Reports medians, microseconds per feature row, the new/baseline ratio per row and peak RSS above
the RSS before the build.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tu_analytics.counters import TIME  # noqa: E402

CATALOGUE = ROOT / "tu_analytics" / "formats" / "machine_insights.csv"
MS_MIN = 60_000
START_MS = 1_717_200_000_000  # 2024-06-01 00:00 UTC


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # not Linux: fall back to the lifetime peak
        return _maxrss_bytes()


def _maxrss_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


class PeakSampler:
    """Samples RSS every few ms in a thread; ``peak`` is the largest value seen."""

    def __init__(self, interval: float = 0.005) -> None:
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_bytes())
            time.sleep(self.interval)

    def __enter__(self) -> PeakSampler:
        self.peak = _rss_bytes()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_bytes())


def _dtype(value_type: str) -> pl.DataType:
    return {
        "double": pl.Float64(),
        "boolean": pl.Boolean(),
        "count": pl.Int64(),
        "enum": pl.String(),
    }.get(value_type, pl.Float64())


def synthesize(
    rows: int = 1_000_000, machines: int = 80, days: int = 7, seed: int = 7, narrow: bool = False
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """A ``main`` frame and a ``fault_codes`` frame, built columnar with numpy."""
    rng = np.random.default_rng(seed)
    minutes = days * 24 * 60

    # Per-machine minute-level operating/idle schedule -> cumulative counters by cumsum.
    minute = np.arange(minutes)
    hour = (minute // 60) % 24
    weekday = (minute // (24 * 60)) % 7 < 5
    shift = (hour >= 6) & (hour < 17) & weekday
    works_today = rng.random((machines, days)) < 0.8
    day_of_min = minute // (24 * 60)
    operating = (
        shift[None, :] & works_today[:, day_of_min] & (rng.random((machines, minutes)) < 0.85)
    )
    idle = operating & (rng.random((machines, minutes)) < 0.25)
    op_cum = np.cumsum(operating, axis=1) / 60.0
    idle_cum = np.cumsum(idle, axis=1) / 60.0
    base_hours = rng.uniform(100, 9000, machines)
    fuel_rate = rng.uniform(6, 25, machines)  # l per operating hour
    speed = np.where(rng.random(machines) < 0.2, 25.0, 2.0)  # km per operating hour

    # Records: machine, measurement time; busier machines report more.
    weights = rng.uniform(0.5, 2.0, machines)
    m = rng.choice(machines, size=rows, p=weights / weights.sum())
    t_rec = START_MS + rng.integers(0, minutes * MS_MIN, rows)
    kafka = t_rec + rng.lognormal(np.log(5_000), 1.0, rows).astype(np.int64)
    late = rng.random(rows) < 0.01  # buffered offline, delivered hours later
    kafka[late] += rng.integers(30 * MS_MIN, 12 * 60 * MS_MIN, late.sum())

    def field_time(p_present: float) -> tuple[np.ndarray, np.ndarray]:
        present = rng.random(rows) < p_present
        # 15 % of present values are repeats of an older measurement.
        stale = rng.random(rows) < 0.15
        t = t_rec - np.where(stale, rng.integers(0, 20 * MS_MIN, rows), 0)
        return present, np.maximum(t, START_MS)

    def minute_of(t: np.ndarray) -> np.ndarray:
        return np.asarray(np.clip((t - START_MS) // MS_MIN, 0, minutes - 1))

    cols: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    cnt_present, cnt_t = field_time(0.35)
    mi = minute_of(cnt_t)
    op = base_hours[m] + op_cum[m, mi]
    idl = 0.3 * base_hours[m] + idle_cum[m, mi]
    # Two machines get a device swap (counters restart low), three an offset jump of +500 h.
    swap_at = START_MS + rng.integers(minutes // 4, 3 * minutes // 4, machines) * MS_MIN
    swapped = np.isin(m, [0, 1]) & (cnt_t >= swap_at[m])
    op = np.where(swapped, op - base_hours[m] + 3.0, op)
    jumped = np.isin(m, [2, 3, 4]) & (cnt_t >= swap_at[m])
    op = np.where(jumped, op + 500.0, op)
    cols["CumulativeOperatingHours"] = (op, cnt_present, cnt_t)
    cols["CumulativeEngineHours"] = (op, cnt_present, cnt_t)
    cols["CumulativeIdleHours"] = (idl, cnt_present, cnt_t)
    cols["EngineTotalFuelUsed"] = (op * fuel_rate[m], cnt_present, cnt_t)
    cols["EngineTotalIdleFuelUsed"] = (idl * 3.0, cnt_present, cnt_t)
    dist_present = cnt_present & (speed[m] > 5)
    cols["TotalVehicleDistance"] = (op * speed[m], dist_present, cnt_t)

    bat_present, bat_t = field_time(0.3)
    on = operating[m, minute_of(bat_t)]
    cols["BatteryPotential"] = (
        np.where(on, 27.8, 25.2) + rng.normal(0, 0.3, rows),
        bat_present,
        bat_t,
    )
    def_present, def_t = field_time(0.12)
    cols["AfterTreatmentDieselExhaustFluidTankLevel"] = (
        np.clip(90 - 4 * op_cum[m, minute_of(def_t)] % 80, 0, 100),
        def_present,
        def_t,
    )
    cool_present, cool_t = field_time(0.25)
    cols["EngineCoolantTemperature"] = (
        np.where(operating[m, minute_of(cool_t)], 88.0, 30.0) + rng.normal(0, 2, rows),
        cool_present,
        cool_t,
    )
    amb_present, amb_t = field_time(0.25)
    day_phase = np.sin(((amb_t - START_MS) / 86_400_000.0 - 0.3) * 2 * np.pi)
    cols["AmbientAirTemperature"] = (
        14 + 6 * day_phase + rng.normal(0, 1, rows),
        amb_present,
        amb_t,
    )

    # Positions: each machine sits on a site, some move to a second site mid-week; GPS jitter.
    loc_present, loc_t = field_time(0.5)
    site_lat = rng.uniform(50, 60, (machines, 2))
    site_lon = rng.uniform(0, 20, (machines, 2))
    moved = (loc_t >= swap_at[m]) & (m % 3 == 0)
    lat = site_lat[m, moved.astype(int)] + rng.normal(0, 0.0003, rows)
    lon = site_lon[m, moved.astype(int)] + rng.normal(0, 0.0005, rows)
    zero = rng.random(rows) < 0.005  # altitude-only records carry (0, 0)
    lat[zero] = 0.0
    lon[zero] = 0.0

    ids = np.array([f"{i:08x}-0000-4000-8000-{i:012x}" for i in range(machines)])
    order = np.argsort(kafka, kind="stable")  # frames arrive in receipt order

    def ts(values: np.ndarray) -> pl.Series:
        return pl.Series(values[order]).cast(pl.Datetime("ms")).dt.replace_time_zone("UTC")

    data: dict[str, pl.Series] = {
        "partition": pl.Series((m % 6)[order].astype(np.int32)),
        "offset": pl.Series(np.arange(rows, dtype=np.int64)),
        "kafka_timestamp": ts(kafka),
        "schema_id": pl.Series(np.full(rows, 100001, dtype=np.int32)),
        "MachineId": pl.Series(ids[m[order]]),
        "UnitId": pl.Series((1_000_000 + m[order]).astype(np.int64)),
        # Identity as every record carries it (features keep it as known at each cut-off).
        "EquipmentID": pl.Series(np.array([f"EX-{i:03d}" for i in range(machines)])[m[order]]),
        "OEMName": pl.Series(np.array(["Volvo", "CAT", "JCB"])[m[order] % 3]),
        "Model": pl.Series(np.array([f"M{i % 7}" for i in range(machines)])[m[order]]),
        "Latitude": pl.Series(np.where(loc_present, lat, np.nan)[order]).fill_nan(None),
        "Longitude": pl.Series(np.where(loc_present, lon, np.nan)[order]).fill_nan(None),
        "Location_datetime": ts(loc_t).set(pl.Series(~loc_present[order]), None),
    }
    for name, (values, present, t) in cols.items():
        mask = pl.Series(~present[order])
        data[name] = pl.Series(values[order].astype(np.float64)).set(mask, None)
        data[f"{name}_datetime"] = ts(t).set(mask, None)
    main = pl.DataFrame(data)
    if not narrow:
        with CATALOGUE.open() as fh:
            catalogue = list(csv.DictReader(fh))
        identity = {
            "TelematicSerialNumber": pl.String(),
            "ExternalReferenceNumber": pl.String(),
            "SerialNumber": pl.String(),
            "PIN": pl.String(),
            "UnitInstallDateTime": TIME,
            "Altitude": pl.Float64(),
            "AltitudeUnits": pl.String(),
            "AccuracyRadius": pl.Float64(),
            "HighAccuracy": pl.Boolean(),
            "Country": pl.String(),
            "Zipcode": pl.String(),
            "City": pl.String(),
            "Address": pl.String(),
            "GeoHash": pl.String(),
            "LocationAddress_datetime": TIME,
        }
        extra = [pl.lit(None, dtype=t).alias(c) for c, t in identity.items()]
        for row in catalogue:
            if row["name"] not in main.columns and row["name"] not in identity:
                extra.append(pl.lit(None, dtype=_dtype(row["value_type"])).alias(row["name"]))
                extra.append(pl.lit(None, dtype=TIME).alias(f"{row['name']}_datetime"))
        main = main.with_columns(extra)

    # Faults: ~3 occurrences per machine-day, each seen in 1-3 records (raise, repeats, clear).
    n_occ = machines * days * 3
    occ_m = rng.integers(0, machines, n_occ)
    raised = START_MS + rng.integers(0, minutes * MS_MIN, n_occ)
    cleared = raised + rng.integers(5 * MS_MIN, 36 * 60 * MS_MIN, n_occ)
    codes = np.array(
        [
            f"{spn}-{fmi}"
            for spn, fmi in zip(rng.integers(90, 5000, 40), rng.integers(0, 31, 40), strict=True)
        ]
    )
    occ_code = codes[rng.integers(0, len(codes), n_occ)]
    sev = np.array(["30", "67", "90", "High", "Low"])[rng.integers(0, 5, n_occ)]
    reps = rng.integers(1, 4, n_occ)
    idx = np.repeat(np.arange(n_occ), reps)
    last_rep = np.r_[np.diff(idx) != 0, True]
    is_clear = last_rep & (reps[idx] > 1) & (cleared[idx] < START_MS + minutes * MS_MIN)
    f_kafka = np.where(is_clear, cleared[idx], raised[idx]) + rng.integers(1_000, 120_000, len(idx))
    faults = pl.DataFrame(
        {
            "partition": pl.Series((occ_m[idx] % 6).astype(np.int32)),
            "offset": pl.Series(np.arange(len(idx), dtype=np.int64)),
            "kafka_timestamp": pl.Series(f_kafka)
            .cast(pl.Datetime("ms"))
            .dt.replace_time_zone("UTC"),
            "schema_id": pl.Series(np.full(len(idx), 100001, dtype=np.int32)),
            "MachineId": pl.Series(ids[occ_m[idx]]),
            "CodeIdentifier": pl.Series(occ_code[idx]),
            "CodeDescription": pl.Series(np.full(len(idx), "synthetic")),
            "CodeSeverity": pl.Series(sev[idx]),
            "CodeSource": pl.Series(np.full(len(idx), "0")),
            "datetime": pl.Series(raised[idx]).cast(pl.Datetime("ms")).dt.replace_time_zone("UTC"),
            "datetimeCleared": pl.Series(np.where(is_clear, cleared[idx], 0))
            .cast(pl.Datetime("ms"))
            .dt.replace_time_zone("UTC")
            .set(pl.Series(~is_clear), None),
        }
    )
    return main, faults


CHILD = """
import datetime, json, sys, time
sys.path.insert(0, {src!r})
sys.path.insert(1, {bench!r})
import polars as pl
from tu_analytics.features import feature_table  # first: bench_features puts ROOT on the path
from bench_features import PeakSampler, _rss_bytes
kw = dict(every={every!r}, fault_codes=pl.read_parquet({faults!r}))
if {grouped!r}:
    main = pl.scan_parquet({main!r})
    kw.update(end={end!r}, group_size={group_size!r})
    kw["fault_codes"] = pl.scan_parquet({faults!r})
else:
    main = pl.read_parquet({main!r})
before = _rss_bytes()
with PeakSampler() as sampler:
    t0 = time.perf_counter()
    frame = feature_table(main, **kw).frame
    seconds = time.perf_counter() - t0
print(json.dumps({{"s": seconds, "rows": frame.height, "cols": frame.width,
                   "peak_mib": (sampler.peak - before) / 2**20, "module": feature_table.__module__,
                   "path": sys.modules["tu_analytics"].__file__}}))
"""


def _child(
    src: str,
    main: Path,
    faults: Path,
    every: str,
    grouped: bool = False,
    end: object = None,
    group_size: int | None = None,
) -> dict[str, float]:
    """One build in a fresh interpreter: clean timings and a peak RSS of this build alone."""
    code = CHILD.format(
        src=src,
        bench=str(ROOT / "benchmarks"),
        every=every,
        faults=str(faults),
        main=str(main),
        grouped=grouped,
        end=end,
        group_size=group_size,
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--rows", type=int, default=2_000_000)
    parser.add_argument("--machines", type=int, default=60, help="the default fleet: 60")
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--every", default="1h")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--narrow", action="store_true", help="only the columns features read")
    parser.add_argument(
        "--baseline-src",
        help="directory holding an older tu_analytics to "
        "compare with in the same run (e.g. from `git archive REV tu_analytics`)",
    )
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)

    t0 = time.perf_counter()
    main_frame, faults = synthesize(args.rows, args.machines, args.days, narrow=args.narrow)
    prepare_s = time.perf_counter() - t0
    tmp = Path(tempfile.mkdtemp(prefix="bench_features_"))
    main_path, faults_path = tmp / "main.parquet", tmp / "faults.parquet"
    main_frame.write_parquet(main_path)
    faults.write_parquet(faults_path)
    end = (main_frame["kafka_timestamp"].max() + timedelta(hours=1)).isoformat()  # type: ignore[operator]
    runs: dict[str, list[dict[str, float]]] = {"new": [], "baseline": [], "grouped": []}
    for _ in range(args.rounds):  # interleaved, so all variants see the same machine load
        runs["new"].append(_child(str(ROOT), main_path, faults_path, args.every))
        if args.baseline_src:
            runs["baseline"].append(_child(args.baseline_src, main_path, faults_path, args.every))
        runs["grouped"].append(
            _child(
                str(ROOT),
                main_path,
                faults_path,
                args.every,
                True,
                datetime.fromisoformat(end),
                args.group_size,
            )
        )
    result: dict[str, object] = {
        "rows": main_frame.height,
        "columns": main_frame.width,
        "machines": args.machines,
        "days": args.days,
        "every": args.every,
        "rounds": args.rounds,
        "prepare_s": prepare_s,
        "polars": pl.__version__,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }
    for name, rs in runs.items():
        if not rs:
            continue
        med = statistics.median(r["s"] for r in rs)
        result[f"{name}_times_s"] = [round(r["s"], 2) for r in rs]
        result[f"{name}_median_s"] = round(med, 2)
        result[f"{name}_feature_rows"] = rs[0]["rows"]
        result[f"{name}_us_per_row"] = round(med / rs[0]["rows"] * 1e6, 1)
        result[f"{name}_peak_rss_increase_mib"] = round(max(r["peak_mib"] for r in rs), 1)
    if runs["baseline"]:
        result["ratio_new_to_baseline_per_row"] = round(
            float(result["new_us_per_row"]) / float(result["baseline_us_per_row"]),
            2,  # type: ignore[arg-type]
        )
    shutil.rmtree(tmp)
    for key, value in result.items():
        print(f"{key:>34}: {value}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
