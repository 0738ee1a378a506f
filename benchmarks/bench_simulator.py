"""Benchmark the fleet simulator: generate records and encode them to Confluent-framed Avro.

    .venv/bin/python benchmarks/bench_simulator.py                      # 1,000,000 records
    .venv/bin/python benchmarks/bench_simulator.py --records 200000 --rounds 5 --json out.json

Measures, on the default fleet (76 machines) from the simulator's epoch onward:
- ``encoded_batches``: generation + Avro encoding + framing (what the sandbox streamer does);
- ``records``: generation into payload dicts (no encoding);
- ``seek``: a fresh simulator's first window ~11 months after the epoch (the day-by-day state
  chain a sandbox pays once at start-up).
Throughput is records per wall-clock second (median over rounds); CPU seconds are reported too
because wall time on a shared machine includes other processes. Peak memory is the process's
peak RSS (``ru_maxrss``), before and after.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from tu_analytics.sandbox.fleet import build_fleet
from tu_analytics.sandbox.simulator import DEFAULT_EPOCH, Simulator

SCHEMA_IDS = {("insights", 1): 1, ("insights", 2): 2, ("insights", 3): 4, ("raw", 1): 3}
FAR = timedelta(days=3650)  # generation stops once enough records came out


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def new_sim(seed: int) -> Simulator:
    return Simulator(build_fleet(seed), seed=seed, v2_from=DEFAULT_EPOCH + timedelta(days=30),
                     v3_from=DEFAULT_EPOCH + timedelta(days=60))


def bench_encoded(n: int, seed: int) -> dict[str, Any]:
    sim = new_sim(seed)
    count = nbytes = 0
    w0, c0 = time.perf_counter(), time.process_time()
    for batch in sim.encoded_batches(DEFAULT_EPOCH, DEFAULT_EPOCH + FAR, SCHEMA_IDS,
                                     batch_size=10_000):
        count += len(batch)
        nbytes += sum(len(value) for _, value, _, _, _ in batch)
        if count >= n:
            break
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    return {"records": count, "wall_s": wall, "cpu_s": cpu, "bytes": nbytes}


def bench_records(n: int, seed: int) -> dict[str, Any]:
    sim = new_sim(seed)
    count = 0
    last = 0
    w0, c0 = time.perf_counter(), time.process_time()
    for rec in sim.records(DEFAULT_EPOCH, DEFAULT_EPOCH + FAR):
        count += 1
        last = rec.receipt_ms
        if count >= n:
            break
    wall, cpu = time.perf_counter() - w0, time.process_time() - c0
    return {"records": count, "wall_s": wall, "cpu_s": cpu, "simulated_until_ms": last}


def bench_seek(seed: int) -> dict[str, Any]:
    start = DEFAULT_EPOCH + timedelta(days=330)
    w0, c0 = time.perf_counter(), time.process_time()
    sim = new_sim(seed)
    n = sum(1 for _ in sim.records(start, start + timedelta(seconds=1)))
    return {"wall_s": time.perf_counter() - w0, "cpu_s": time.process_time() - c0,
            "days_after_epoch": 330, "records": n}


def rounds(fn: Callable[[], dict[str, Any]], k: int) -> dict[str, Any]:
    runs = [fn() for _ in range(k)]
    rate = [r["records"] / r["wall_s"] for r in runs]
    cpu_rate = [r["records"] / r["cpu_s"] for r in runs]
    return {"runs": runs, "records_per_s": statistics.median(rate),
            "records_per_cpu_s": statistics.median(cpu_rate)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=1_000_000,
                    help="records to generate+encode per round (default 1,000,000)")
    ap.add_argument("--dict-records", type=int, default=None,
                    help="records for the records() (dict) benchmark (default: --records / 5)")
    ap.add_argument("--rounds", type=int, default=1, help="rounds; the median is reported")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args(argv)
    dict_n = args.dict_records or max(1, args.records // 5)

    fleet = build_fleet(args.seed)
    rss0 = peak_rss_mb()
    encoded = rounds(lambda: bench_encoded(args.records, args.seed), args.rounds)
    rss_encoded = peak_rss_mb()
    dicts = rounds(lambda: bench_records(dict_n, args.seed), args.rounds)
    seek = bench_seek(args.seed)
    result = {
        "benchmark": "simulator",
        "python": platform.python_version(),
        "machine": platform.machine(),
        "machines": len(fleet.machines),
        "customers": len(fleet.customers),
        "rounds": args.rounds,
        "encoded_batches": encoded,
        "records": dicts,
        "seek": seek,
        "peak_rss_mb": {"before": round(rss0, 1), "after_encoded": round(rss_encoded, 1),
                        "end": round(peak_rss_mb(), 1)},
    }
    e = encoded["runs"][0]
    print(f"fleet: {len(fleet.machines)} machines, {len(fleet.customers)} customers")
    print(f"encoded_batches: {e['records']:,} records, {e['bytes'] / e['records']:.0f} B/record; "
          f"median {encoded['records_per_s']:,.0f} records/s wall, "
          f"{encoded['records_per_cpu_s']:,.0f} records/CPU-s")
    print(f"records():       {dicts['runs'][0]['records']:,} records; median "
          f"{dicts['records_per_s']:,.0f} records/s wall, "
          f"{dicts['records_per_cpu_s']:,.0f} records/CPU-s")
    print(f"seek {seek['days_after_epoch']} days after the epoch (fresh simulator): "
          f"{seek['wall_s']:.2f} s wall, {seek['cpu_s']:.2f} s CPU")
    print(f"peak RSS: {rss0:.0f} MB before, {rss_encoded:.0f} MB after encoding, "
          f"{peak_rss_mb():.0f} MB at the end")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
