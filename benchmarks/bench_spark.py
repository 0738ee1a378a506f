"""The same 1,000,000-record window on Spark (local[1], local[2]) and on Polars, in one run.

Uses ``bench_window.py``'s topic and loader (``bench.machine-insights``, 3 partitions, the
sandbox's simulator and encoder), registers the sandbox's value-schema versions under that
topic's subject (so the Spark schema is derived as for any topic), then per round, each in a
fresh process:

- Polars: ``connect(...).window(start, end)`` (``bench_window.py``'s round);
- Spark ``local[1]`` and ``local[2]``: start the session, ``tu_analytics.spark.window()`` (the
  driver's plan), then ``count()``, which makes every task read, decode and hand its Arrow
  batches to the JVM. Task times come from Spark's REST API (executor run time per task).

    .venv/bin/python benchmarks/bench_spark.py --records 1000000 --rounds 3 --reuse

Needs the ``spark`` extra (``pip install -e '.[spark]'``) and Java 17 or 21.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
import bench_window as bw  # the loader and the Polars round, shared

#: Records per Spark task: 1,000,000 over 3 partitions gives 12 tasks.
PER_TASK = 100_000


def register_subject(env: dict[str, str], source_topic: str, topic: str) -> int:
    """Register every value-schema version of ``source_topic`` under ``topic``'s subject."""
    from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

    auth = f"{env['TU_SCHEMA_REGISTRY_USERNAME']}:{env['TU_SCHEMA_REGISTRY_PASSWORD']}"
    src = f"{source_topic}-value"
    with SchemaRegistryClient({"url": env["TU_SCHEMA_REGISTRY_URL"],
                               "basic.auth.user.info": auth}) as client:
        versions = client.get_versions(src)
        for v in versions:
            text = client.get_version(src, v).schema.schema_str
            client.register_schema(f"{topic}-value", Schema(text, "AVRO"))
    return len(versions)


def _stage_times(ui: str, app: str) -> dict[str, float]:
    url = f"{ui}/api/v1/applications/{app}/stages?status=complete"
    with urllib.request.urlopen(url, timeout=60) as r:
        stages = json.loads(r.read())
    # The scan stage is the one with the most tasks (count's final stage has one).
    scan = max(stages, key=lambda s: s["numCompleteTasks"])
    return {"tasks": scan["numCompleteTasks"], "task_seconds": scan["executorRunTime"] / 1000,
            "task_cpu_seconds": scan["executorCpuTime"] / 1e9,
            "failed_tasks": sum(s["numFailedTasks"] for s in stages)}


def _tree_cpu_s(root: int) -> float:
    """CPU seconds of process ``root`` and its descendants (the JVM, the Python daemon and its
    workers), reaped children included."""
    parents: dict[int, int] = {}
    cpu: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry.name)] = int(fields[1])
        cpu[int(entry.name)] = sum(int(x) for x in fields[11:15]) / tick
    tree, todo = set(), [root]
    while todo:
        pid = todo.pop()
        tree.add(pid)
        todo += [c for c, p in parents.items() if p == pid and c not in tree]
    return sum(cpu.get(p, 0.0) for p in tree)


def spark_round(env: dict[str, str], start: str, end: str, cores: int,
                per_task: int) -> dict[str, float]:
    """Runs in a subprocess: one Spark session in local[cores], one window, one count()."""
    from pyspark.sql import SparkSession

    import tu_analytics as tu
    import tu_analytics.spark as tus

    os.environ["PYSPARK_PYTHON"] = sys.executable
    t0 = time.perf_counter()
    spark = (SparkSession.builder.master(f"local[{cores}]").appName("bench-spark")
             .config("spark.pyspark.python", sys.executable)
             .config("spark.driver.bindAddress", "127.0.0.1")
             .config("spark.driver.host", "127.0.0.1")
             .config("spark.ui.port", "0")
             .config("spark.driver.memory", "2g")
             .config("spark.sql.session.timeZone", "UTC")
             .getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    # One tiny job first, so the read is not charged with Python-worker start-up.
    spark.range(cores).repartition(cores).count()
    jvm = spark.sparkContext._gateway.proc.pid  # type: ignore[union-attr]
    started = time.perf_counter()
    conn = tu.connect(tu.Settings.resolve(env=env))
    df = tus.window(spark, conn, start, end, max_records_per_task=per_task)
    planned = time.perf_counter()
    cpu0 = _tree_cpu_s(jvm)
    records = df.count()
    done = time.perf_counter()
    cpu = _tree_cpu_s(jvm) - cpu0
    times = _stage_times(spark.sparkContext.uiWebUrl or "", spark.sparkContext.applicationId)
    spark.stop()
    return {"records": records, "startup_seconds": started - t0,
            "plan_seconds": planned - started, "seconds": done - planned,
            "records_per_s": records / (done - planned),
            "records_per_task_s": records / times["task_seconds"], "cpu_seconds": cpu,
            "records_per_cpu_s": records / cpu, **times}


def _run(args: list[str], env_extra: dict[str, str]) -> dict[str, Any]:
    out = subprocess.run([sys.executable, *args], capture_output=True, text=True, check=True,
                         env={**os.environ, **env_extra})
    return json.loads(out.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def _table(rounds: list[dict[str, dict[str, float]]]) -> None:
    def med(kind: str, key: str) -> float:
        return statistics.median(r[kind][key] for r in rounds)

    p, s1, s2 = "polars", "spark1", "spark2"
    print(f"\n| median of {len(rounds)} rounds | Polars window | Spark local[1] | Spark local[2] |")
    print("|---|---|---|---|")
    print(f"| records | {med(p, 'records'):,.0f} | {med(s1, 'records'):,.0f} | "
          f"{med(s2, 'records'):,.0f} |")
    print(f"| read seconds (window() / count()) | {med(p, 'seconds'):.1f} | "
          f"{med(s1, 'seconds'):.1f} | {med(s2, 'seconds'):.1f} |")
    print(f"| records/s | {med(p, 'records_per_s'):,.0f} | {med(s1, 'records_per_s'):,.0f} | "
          f"{med(s2, 'records_per_s'):,.0f} |")
    print(f"| records/s per task (executor run time) | — | "
          f"{med(s1, 'records_per_task_s'):,.0f} | {med(s2, 'records_per_task_s'):,.0f} |")
    pcpu = statistics.median(r[p]["records"] / r[p]["cpu_s"] for r in rounds)
    print(f"| records per CPU-second (Spark: JVM + Python workers) | {pcpu:,.0f} | "
          f"{med(s1, 'records_per_cpu_s'):,.0f} | {med(s2, 'records_per_cpu_s'):,.0f} |")
    print(f"| tasks | — | {med(s1, 'tasks'):.0f} | {med(s2, 'tasks'):.0f} |")
    print(f"| session start + warm-up / plan seconds | — | {med(s1, 'startup_seconds'):.1f} / "
          f"{med(s1, 'plan_seconds'):.1f} | {med(s2, 'startup_seconds'):.1f} / "
          f"{med(s2, 'plan_seconds'):.1f} |")
    scale = statistics.median(r[s1]["seconds"] / r[s2]["seconds"] for r in rounds)
    over = statistics.median(r[s2]["seconds"] / r[p]["seconds"] for r in rounds)
    print(f"\nscaling local[1] -> local[2]: {scale:.2f}x; Spark local[2] / Polars: {over:.2f}x "
          "(medians of per-round ratios)")


def _sandbox() -> tuple[Path, Any, Path | None]:
    from tu_analytics.sandbox import manager
    from tu_analytics.sandbox._state import load_state, sandbox_dir

    root = sandbox_dir()
    st = load_state(root)
    if st is not None and manager.is_running(st, root):
        return root, st, None
    root = Path(tempfile.mkdtemp()) / "sandbox"
    print(f"starting a sandbox in {root}", file=sys.stderr)
    manager.up(root=root, backfill_days=0.05, say=lambda m: print(m, file=sys.stderr))
    return root, load_state(root), root


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--per-task", type=int, default=PER_TASK)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--reuse", action="store_true",
                    help="skip loading when the topic already holds --records records")
    ap.add_argument("--spark-round", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.spark_round:
        spec = json.loads(args.spark_round)
        print(json.dumps(spark_round(spec["env"], spec["start"], spec["end"], spec["cores"],
                                     spec["per_task"])))
        return

    from tu_analytics.sandbox import manager

    root, st, started = _sandbox()
    try:
        span = bw.reusable(st, root, args.records) if args.reuse else None
        if span is None:
            (root / bw.SPAN_FILE).unlink(missing_ok=True)
            span = bw.load(st, args.records)
            bw.save_span(root, args.records, span)
        env = manager.env_vars(root=root, admin=True)
        register_subject(env, env["TU_TOPIC"], bw.TOPIC)
        env["TU_TOPIC"] = bw.TOPIC
        start, end = (datetime.fromtimestamp(t / 1000, UTC).isoformat() for t in span)
        base = {"env": env, "start": start, "end": end}
        extra = {"TU_SANDBOX_DIR": str(root)}
        rounds = []
        for i in range(args.rounds):
            r = {"polars": _run([bw.__file__, "--round", json.dumps(base)], extra)}
            for cores in (1, 2):
                spec = json.dumps({**base, "cores": cores, "per_task": args.per_task})
                r[f"spark{cores}"] = _run([__file__, "--spark-round", spec], extra)
            rounds.append(r)
            print(f"round {i + 1}: " + ", ".join(
                f"{k} {v['records']:,} in {v['seconds']:.1f} s" for k, v in r.items()),
                file=sys.stderr)
        _table(rounds)
        if args.json:
            args.json.write_text(json.dumps({"rounds": rounds}, indent=1))
    finally:
        if started is not None:
            manager.down(root=started)


if __name__ == "__main__":
    main()
