"""The Delta Lake archive: archiving rate against the bare window, and scan_archive speed.

Part 1 loads ``--records`` simulated records into the bench topic of a running sandbox (the
loader of ``bench_window.py``; ``--reuse`` keeps them), then alternates rounds of
``conn.window(start, end)`` and ``conn.archive(fresh_uri, once=True)`` over the same records,
each in a fresh subprocess. Ratio = archive records/s over window records/s (same run).

Part 2 builds a ``--rows`` synthetic archive (60 days, 40 columns, written through the
archive's own store, not Kafka) and alternates ``tu.scan_archive(uri, start=day, end=day+1,
columns=5)`` with ``pl.scan_delta`` on the same filter, each round in a subprocess that
samples its RSS every 5 ms.

    .venv/bin/python benchmarks/bench_archive.py                       # 1M records, 5M rows
    .venv/bin/python benchmarks/bench_archive.py --records 300000 --rows 5000000 --rounds 3
    .venv/bin/python benchmarks/bench_archive.py --skip-kafka          # part 2 only
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
COLUMNS = ["MachineId", "kafka_timestamp", "EngineHours", "FuelLevel", "Latitude"]
DAYS = 60


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _peak(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """fn's result, seconds, and peak RSS above the start (MB), sampled every 5 ms."""
    base = _rss_mb()
    peak = [base]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], _rss_mb())
            time.sleep(0.005)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    t0 = time.perf_counter()
    out = fn()
    secs = time.perf_counter() - t0
    stop.set()
    t.join()
    return out, secs, peak[0] - base


def kafka_round(kind: str, env: dict[str, str], start: str, end: str) -> dict[str, float]:
    import bench_window as bw

    import tu_analytics as tu

    conn = tu.connect(tu.Settings.resolve(env=env))
    busy0, own0 = bw._busy_cpu_s(), bw._own_cpu_s()
    if kind == "window":
        win, secs, peak = _peak(lambda: conn.window(start, end, progress=False,
                                                    max_records=None))
        n = win.main.height + win.errors.height
    else:
        uri = tempfile.mkdtemp(prefix="bench-archive-")
        try:
            res, secs, peak = _peak(lambda: conn.archive(uri, once=True))
            n = res.records + res.errors
        finally:
            shutil.rmtree(uri, ignore_errors=True)
    own = bw._own_cpu_s() - own0
    # The machine is shared: CPU time other processes (the broker included) used meanwhile.
    others = bw._busy_cpu_s() - busy0 - own
    return {"records": n, "seconds": secs, "records_per_s": n / secs, "peak_rss_mb": peak,
            "cpu_s": own, "records_per_cpu_s": n / own, "others_cpu_s": others,
            "load1": os.getloadavg()[0]}


def scan_round(kind: str, uri: str, day: str) -> dict[str, float]:
    import polars as pl

    import tu_analytics as tu

    a = datetime.fromisoformat(day).replace(tzinfo=UTC)
    b = a + timedelta(days=1)
    if kind == "scan_archive":
        def run() -> Any:
            return tu.scan_archive(uri, start=a, end=b, columns=COLUMNS).collect()
    else:
        def run() -> Any:
            return (pl.scan_delta(f"{uri}/main")
                    .filter((pl.col("kafka_date") == a.date()) & (pl.col("kafka_timestamp") >= a)
                            & (pl.col("kafka_timestamp") < b))
                    .select(COLUMNS).collect())
    df, secs, peak = _peak(run)
    return {"rows": df.height, "seconds": secs, "peak_rss_mb": peak}


def build_archive(uri: str, rows: int) -> None:
    """``rows`` synthetic records over DAYS days, through the archive's own store."""
    import numpy as np
    import polars as pl

    from tu_analytics.archive import _layout as L
    from tu_analytics.archive._store import Store, with_added

    rng = np.random.default_rng(7)
    t0 = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp() * 1000)
    span = DAYS * 86_400_000
    extra = {f"Insight{i}": pl.Float64 for i in range(33)}
    empty = pl.DataFrame(schema={
        "partition": pl.Int32, "offset": pl.Int64, "kafka_timestamp": pl.Datetime("ms", "UTC"),
        "schema_id": pl.Int32, "MachineId": pl.String, "EngineHours": pl.Float64,
        "FuelLevel": pl.Float64, "Latitude": pl.Float64, **extra})
    from tu_analytics._decode import ERRORS_SCHEMA

    store = Store.create_or_open(uri, "bench", "insights", {
        L.MAIN: empty, L.ERRORS: pl.DataFrame(schema=ERRORS_SCHEMA)})
    step = 500_000
    for lo in range(0, rows, step):
        n = min(step, rows - lo)
        ts = np.sort(rng.integers(t0 + span * lo // rows, t0 + span * (lo + n) // rows, n))
        df = pl.DataFrame({
            "partition": pl.Series([0] * n, dtype=pl.Int32),
            "offset": pl.Series(range(lo, lo + n), dtype=pl.Int64),
            "kafka_timestamp": pl.Series(ts).cast(pl.Datetime("ms", "UTC")),
            "schema_id": pl.Series([4] * n, dtype=pl.Int32),
            "MachineId": [f"machine-{i % 500:04d}" for i in range(n)],
            "EngineHours": rng.random(n) * 5000, "FuelLevel": rng.random(n) * 100,
            "Latitude": rng.random(n) * 10 + 50,
            **{c: rng.random(n) for c in extra},
        })
        store.commit({L.MAIN: with_added(df, "kafka")}, {0: lo or None}, {0: lo + n})


def _rounds(kinds: list[str], rounds: int, spec: dict[str, Any], say: str) -> dict[str, Any]:
    got: dict[str, list[dict[str, float]]] = {k: [] for k in kinds}
    for i in range(rounds):
        for kind in kinds:  # interleaved: both see the same machine load
            out = subprocess.run([sys.executable, __file__, "--round",
                                  json.dumps({**spec, "kind": kind})],
                                 capture_output=True, text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            got[kind].append(r)
            print(f"{say} round {i + 1} {kind}: {r}", file=sys.stderr)
    med: dict[str, Any] = {k: {m: statistics.median(r[m] for r in v) for m in v[0]}
                           for k, v in got.items()}
    med["rounds"] = got
    return med


def part_kafka(args: argparse.Namespace) -> dict[str, Any]:
    import bench_window as bw

    from tu_analytics.sandbox import manager
    from tu_analytics.sandbox._state import load_state, sandbox_dir

    root = sandbox_dir()
    st = load_state(root)
    if st is None or not manager.is_running(st, root):
        raise SystemExit("part 1 needs a running sandbox (tu-analytics sandbox up), "
                         "or pass --skip-kafka")
    span = bw.reusable(st, root, args.records) if args.reuse else None
    if span is None:
        span = bw.load(st, args.records)
        bw.save_span(root, args.records, span)
    env = manager.env_vars(root=root, admin=True)
    env["TU_TOPIC"] = bw.TOPIC
    spec = {"part": "kafka", "env": env,
            "start": datetime.fromtimestamp(span[0] / 1000, UTC).isoformat(),
            "end": datetime.fromtimestamp(span[1] / 1000, UTC).isoformat()}
    med = _rounds(["window", "archive"], args.rounds, spec, "kafka")
    med["ratio"] = med["archive"]["records_per_s"] / med["window"]["records_per_s"]
    # Each round's archive beside the window just before it (the same machine load).
    med["round_ratios"] = [a["records_per_s"] / w["records_per_s"] for w, a in
                           zip(med["rounds"]["window"], med["rounds"]["archive"], strict=True)]
    med["cpu_ratio"] = (med["archive"]["records_per_cpu_s"]
                        / med["window"]["records_per_cpu_s"])
    return med


def part_scan(args: argparse.Namespace) -> dict[str, Any]:
    uri = tempfile.mkdtemp(prefix="bench-scan-")
    try:
        t0 = time.perf_counter()
        build_archive(uri, args.rows)
        print(f"built a {args.rows:,}-row archive in {time.perf_counter() - t0:.0f} s",
              file=sys.stderr)
        day = (date(2026, 1, 1) + timedelta(days=DAYS // 2)).isoformat()
        med = _rounds(["scan_archive", "scan_delta"], args.rounds,
                      {"part": "scan", "uri": uri, "day": day}, "scan")
        med["ratio"] = med["scan_archive"]["seconds"] / med["scan_delta"]["seconds"]
        return med
    finally:
        shutil.rmtree(uri, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--rows", type=int, default=5_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--reuse", action="store_true")
    ap.add_argument("--skip-kafka", action="store_true")
    ap.add_argument("--skip-scan", action="store_true", help="part 1 only")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--round", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.round:
        spec = json.loads(args.round)
        if spec["part"] == "kafka":
            r = kafka_round(spec["kind"], spec["env"], spec["start"], spec["end"])
        else:
            r = scan_round(spec["kind"], spec["uri"], spec["day"])
        print(json.dumps(r))
        return
    result: dict[str, Any] = {}
    if not args.skip_kafka:
        k = result["kafka"] = part_kafka(args)
        print(f"| archive vs window, {k['window']['records']:,.0f} records | "
              f"window {k['window']['records_per_s']:,.0f}/s, archive "
              f"{k['archive']['records_per_s']:,.0f}/s: {k['ratio']:.0%} (per CPU-s "
              f"{k['cpu_ratio']:.0%}; rounds "
              f"{', '.join(f'{r:.0%}' for r in k['round_ratios'])}); peak RSS window "
              f"{k['window']['peak_rss_mb']:,.0f} MB, "
              f"archive {k['archive']['peak_rss_mb']:,.0f} MB |")
    if args.skip_scan:
        _finish(args, result)
        return
    s = result["scan"] = part_scan(args)
    print(f"| scan_archive one day x 5 columns of {args.rows:,} rows | "
          f"{s['scan_archive']['seconds'] * 1000:.0f} ms vs pl.scan_delta "
          f"{s['scan_delta']['seconds'] * 1000:.0f} ms ({s['ratio']:.2f}x); peak RSS "
          f"{s['scan_archive']['peak_rss_mb']:.0f} MB |")
    _finish(args, result)


def _finish(args: argparse.Namespace, result: dict[str, Any]) -> None:
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
