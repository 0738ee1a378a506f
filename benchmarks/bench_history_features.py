"""A 30-day hourly feature table over an archive, machine group by machine group: peak memory.

Builds a synthetic archive (``bench_features.synthesize``: 60 machines, 30 days, the columns
features read, and a ``fault_codes`` long frame) through the archive's own store, not Kafka,
once per ``--rows`` size. Then, each round in a fresh interpreter (rounds interleaved, so
both variants see the same machine load):

* ``grouped``: ``feature_table(tu.scan_archive(uri), fault_codes=scan_archive(uri,
  table="fault_codes"), every="1h", end=..., group_size=N)``: the LazyFrame read machine
  group by machine group;
* ``whole``: the same LazyFrame and grid without ``group_size``: the whole input at once.

Peak RSS is sampled every 5 ms in the child (peak minus the RSS before the call); rows/s are
input rows over seconds. Before timing, grouped == whole is checked cell for cell on a small
archive of the same kind (``--check-rows``).

    .venv/bin/python benchmarks/bench_history_features.py                  # 1M and 5M rows
    .venv/bin/python benchmarks/bench_history_features.py --rows 5000000 --rounds 3 --json h.json
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
import time
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))
COMMIT_ROWS = 500_000


def build(uri: str, rows: int, machines: int, days: int) -> datetime:
    """A ``rows``-row archive at ``uri``; returns the grid's end (the hour after the last
    record)."""
    import polars as pl
    from bench_features import synthesize

    from tu_analytics._decode import ERRORS_SCHEMA
    from tu_analytics.archive import _layout as L
    from tu_analytics.archive._store import Store, with_added

    main, faults = synthesize(rows, machines, days, narrow=True)
    # One partition whose offsets are the row numbers: every row below the watermark.
    main = main.with_columns(pl.lit(0, dtype=pl.Int32).alias("partition"))
    faults = faults.with_columns(pl.lit(0, dtype=pl.Int32).alias("partition"))
    store = Store.create_or_open(uri, "bench-history", "insights", {
        L.MAIN: main.clear(), "fault_codes": faults.clear(),
        L.ERRORS: pl.DataFrame(schema=ERRORS_SCHEMA)})
    for lo in range(0, rows, COMMIT_ROWS):
        hi = min(rows, lo + COMMIT_ROWS)
        frames = {L.MAIN: with_added(main.slice(lo, hi - lo), "kafka")}
        if hi == rows:  # fault offsets are below every row count: visible with the last
            frames["fault_codes"] = with_added(faults, "kafka")
        store.commit(frames, {0: lo or None}, {0: hi})
    last = main["kafka_timestamp"].max()
    assert isinstance(last, datetime)
    return last.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)


def _table(uri: str, end: datetime, group_size: int | None, every: str) -> Any:
    import tu_analytics as tu
    from tu_analytics.features import feature_table

    return feature_table(tu.scan_archive(uri), every=every,
                         fault_codes=tu.scan_archive(uri, table="fault_codes"),
                         end=end, group_size=group_size).frame


def child(spec: dict[str, Any]) -> dict[str, float]:
    """One build, in this fresh process: seconds, feature rows, peak RSS above the start."""
    from bench_features import PeakSampler, _rss_bytes

    import tu_analytics  # noqa: F401  (imports are not part of the build)

    end = datetime.fromisoformat(spec["end"])
    before = _rss_bytes()
    with PeakSampler() as sampler:
        t0 = time.perf_counter()
        frame = _table(spec["uri"], end, spec["group_size"], spec["every"])
        secs = time.perf_counter() - t0
    return {"seconds": secs, "feature_rows": frame.height, "rows_per_s": spec["rows"] / secs,
            "peak_mib": (sampler.peak - before) / 2**20, "load1": os.getloadavg()[0]}


def check_equal(rows: int, machines: int, days: int, group_size: int, every: str) -> int:
    """grouped == whole on a small archive of the same kind; returns the feature rows."""
    from polars.testing import assert_frame_equal

    uri = tempfile.mkdtemp(prefix="bench-history-check-")
    try:
        end = build(uri, rows, machines, days)
        whole = _table(uri, end, None, every)
        assert_frame_equal(_table(uri, end, group_size, every), whole, check_exact=True)
        return int(whole.height)
    finally:
        shutil.rmtree(uri, ignore_errors=True)


def _rounds(spec: dict[str, Any], variants: list[str], rounds: int) -> dict[str, Any]:
    got: dict[str, list[dict[str, float]]] = {v: [] for v in variants}
    for i in range(rounds):
        for v in variants:
            arg = {**spec, "group_size": spec["group_size"] if v == "grouped" else None}
            out = subprocess.run([sys.executable, __file__, "--child", json.dumps(arg)],
                                 capture_output=True, text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            got[v].append(r)
            print(f"{spec['rows']:,} rows, round {i + 1}, {v}: {r}", file=sys.stderr)
    return {v: {"median": {m: statistics.median(r[m] for r in rs) for m in rs[0]},
                "rounds": rs} for v, rs in got.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rows", default="1000000,5000000", help="comma-separated sizes")
    ap.add_argument("--machines", type=int, default=60)
    ap.add_argument("--days", type=int, default=30)
    ap.add_argument("--every", default="1h")
    ap.add_argument("--group-size", type=int, default=8)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--no-whole", action="store_true", help="the grouped path only")
    ap.add_argument("--check-rows", type=int, default=200_000)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    result: dict[str, Any] = {"check_feature_rows": check_equal(
        args.check_rows, args.machines, args.days, args.group_size, args.every)}
    print(f"grouped == whole on {args.check_rows:,} rows: equal "
          f"({result['check_feature_rows']:,} feature rows)", file=sys.stderr)
    variants = ["grouped"] if args.no_whole else ["grouped", "whole"]
    for rows in (int(r) for r in args.rows.split(",")):
        uri = tempfile.mkdtemp(prefix="bench-history-")
        try:
            t0 = time.perf_counter()
            end = build(uri, rows, args.machines, args.days)
            print(f"built a {rows:,}-row archive in {time.perf_counter() - t0:.0f} s",
                  file=sys.stderr)
            spec = {"uri": uri, "end": end.isoformat(), "rows": rows, "every": args.every,
                    "group_size": args.group_size}
            res = result[str(rows)] = _rounds(spec, variants, args.rounds)
        finally:
            shutil.rmtree(uri, ignore_errors=True)
        for v in variants:
            m = res[v]["median"]
            print(f"| {rows:,} rows | {v} | {m['seconds']:.1f} s | {m['rows_per_s']:,.0f} rows/s "
                  f"| peak {m['peak_mib']:,.0f} MiB | {m['feature_rows']:,.0f} feature rows "
                  f"| load {m['load1']:.1f} |")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
