"""A 1,000,000-record window pulled from the sandbox, end to end.

Loads ``--records`` simulated Machine Insights records (the sandbox's own simulator and
encoder, real schema ids) into a dedicated 3-partition topic of the running sandbox — or of
one this script starts and stops — then times ``connect(...).window(start, end)`` over all
of them: plan, fetch, registry lookups, decode, flatten. Each round runs in a fresh
subprocess that samples its RSS every 5 ms, so peak memory is measured, not estimated.

    .venv/bin/python benchmarks/bench_window.py                    # 1,000,000 records, 3 rounds
    .venv/bin/python benchmarks/bench_window.py --records 200000 --rounds 5 --json window.json
    .venv/bin/python benchmarks/bench_window.py --reuse     # keep the topic if it holds --records

``--reuse`` skips loading when the bench topic already holds exactly ``--records`` records
written by an earlier run against the same sandbox (their time span is kept next to the
sandbox's state, in ``bench-window.json``).
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
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

TOPIC = "bench.machine-insights"
SPAN_FILE = "bench-window.json"


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _busy_cpu_s() -> float:
    """CPU seconds all processes spent busy (every core), from /proc/stat."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait
    return (sum(fields[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def _own_cpu_s() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def one_round(env: dict[str, str], start: str, end: str) -> dict[str, float]:
    """Runs in a subprocess: one window, with an RSS sampler thread."""
    import threading

    import tu_analytics as tu

    base = _rss_mb()
    peak = [base]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], _rss_mb())
            time.sleep(0.005)

    t = threading.Thread(target=sample, daemon=True)
    t.start()
    from tu_analytics import _kafka

    # Time inside the fetch call: from assign to the last record read (chunks are decoded
    # on worker threads meanwhile; the rest of the window's time is decode catching up,
    # then flatten).
    fetch_s = [0.0]
    real_fetch = _kafka.fetch

    def timed_fetch(*args: Any, **kw: Any) -> Any:
        f0 = time.perf_counter()
        try:
            return real_fetch(*args, **kw)
        finally:
            fetch_s[0] += time.perf_counter() - f0

    _kafka.fetch = timed_fetch
    conn = tu.connect(tu.Settings.resolve(env=env))
    busy0, own0 = _busy_cpu_s(), _own_cpu_s()
    t0 = time.perf_counter()
    win = conn.window(start, end, progress=False, max_records=None)
    secs = time.perf_counter() - t0
    # The machine is shared: CPU time other processes (the broker included) used meanwhile.
    others = (_busy_cpu_s() - busy0) - (_own_cpu_s() - own0)
    stop.set()
    t.join()
    frames_mb = sum(df.estimated_size() for df in win.frames.values()) / 2**20
    return {
        "records": win.main.height + win.errors.height,
        "errors": win.errors.height,
        "seconds": secs,
        "fetch_seconds": fetch_s[0],
        "records_per_s": (win.main.height + win.errors.height) / secs,
        "peak_rss_mb": peak[0] - base,
        "frames_mb": frames_mb,
        "peak_over_frames": (peak[0] - base) / frames_mb if frames_mb else float("nan"),
        "columns": win.main.width,
        "cpu_s": _own_cpu_s() - own0,
        "others_cpu_s": others,
    }


def reusable(state: Any, root: Path, n: int) -> tuple[int, int] | None:
    """The span of an earlier load when the bench topic still holds exactly those n records."""
    from confluent_kafka import Consumer, TopicPartition

    from tu_analytics.sandbox.provision import operator_kafka_config

    try:
        span = json.loads((root / SPAN_FILE).read_text())
    except (OSError, ValueError):
        return None
    if span.get("topic") != TOPIC or span.get("records") != n:
        return None
    consumer = Consumer({**operator_kafka_config(state), "group.id": "bench-window-check"})
    try:
        t = consumer.list_topics(TOPIC, timeout=10).topics.get(TOPIC)
        if t is None or t.error is not None:
            return None
        held = 0
        for p in t.partitions:
            lo, hi = consumer.get_watermark_offsets(TopicPartition(TOPIC, p), timeout=10)
            held += hi - lo
    finally:
        consumer.close()
    return (int(span["first"]), int(span["end"])) if held == n else None


def load(state: Any, n: int) -> tuple[int, int]:
    """Write n simulated records to the bench topic (once); return their time span (ms)."""
    from confluent_kafka import Producer
    from confluent_kafka.admin import AdminClient, NewTopic

    from tu_analytics.sandbox.fleet import build_fleet
    from tu_analytics.sandbox.provision import operator_kafka_config
    from tu_analytics.sandbox.simulator import Simulator
    from tu_analytics.sandbox.streamer import schema_id_map

    conf = operator_kafka_config(state)
    admin = AdminClient(conf)
    if TOPIC in admin.list_topics(timeout=10).topics:
        admin.delete_topics([TOPIC])[TOPIC].result()
        time.sleep(2)
    # Infinite retention: the simulated receipt times reach back months.
    admin.create_topics(
        [NewTopic(TOPIC, num_partitions=3, replication_factor=1, config={"retention.ms": "-1"})]
    )[TOPIC].result()
    producer = Producer(
        {
            **conf,
            "linger.ms": 50,
            "batch.num.messages": 10000,
            "queue.buffering.max.messages": 1_000_000,
            "compression.type": "none",
        }
    )
    sim = Simulator(
        build_fleet(state.seed), seed=state.seed, v2_from=datetime.now(UTC) - timedelta(days=60)
    )
    start = datetime.now(UTC) - timedelta(days=200)
    ids = schema_id_map(state)
    sent, first, last = 0, None, 0
    t0 = time.perf_counter()
    for batch in sim.encoded_batches(start, datetime.now(UTC), ids, formats=("insights",)):
        for key, value, ts, _c, _f in batch:
            if sent >= n:
                break
            while True:
                try:
                    producer.produce(TOPIC, value, key, timestamp=ts)
                    break
                except BufferError:
                    producer.poll(0.05)
            first = ts if first is None else first
            last = ts
            sent += 1
        producer.poll(0)
        if sent >= n:
            break
    assert producer.flush(120) == 0
    print(f"loaded {sent:,} records in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    assert first is not None
    return first, last + 1


def save_span(root: Path, n: int, span: tuple[int, int]) -> None:
    (root / SPAN_FILE).write_text(
        json.dumps({"topic": TOPIC, "records": n, "first": span[0], "end": span[1]})
    )


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", type=Path)
    ap.add_argument(
        "--reuse",
        action="store_true",
        help="skip loading when the topic already holds --records records",
    )
    ap.add_argument("--round", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.round:
        spec = json.loads(args.round)
        print(json.dumps(one_round(spec["env"], spec["start"], spec["end"])))
        return

    from tu_analytics.sandbox import manager
    from tu_analytics.sandbox._state import load_state, sandbox_dir

    root = sandbox_dir()
    started = None
    st = load_state(root)
    if st is None or not manager.is_running(st, root):
        root = Path(tempfile.mkdtemp()) / "sandbox"
        print(f"starting a sandbox in {root}", file=sys.stderr)
        manager.up(root=root, backfill_days=0.05, say=lambda m: print(m, file=sys.stderr))
        started = root
        st = load_state(root)
    try:
        assert st is not None
        span = reusable(st, root, args.records) if args.reuse else None
        if span is None:
            (root / SPAN_FILE).unlink(missing_ok=True)
            span = load(st, args.records)
            save_span(root, args.records, span)
        else:
            print(f"reusing {args.records:,} records in {TOPIC}", file=sys.stderr)
        a, b = span
        env = manager.env_vars(root=root, admin=True)
        env["TU_TOPIC"] = TOPIC
        spec = json.dumps(
            {
                "env": env,
                "start": datetime.fromtimestamp(a / 1000, UTC).isoformat(),
                "end": datetime.fromtimestamp(b / 1000, UTC).isoformat(),
            }
        )
        rounds = []
        for i in range(args.rounds):
            out = subprocess.run(
                [sys.executable, __file__, "--round", spec],
                capture_output=True,
                text=True,
                check=True,
                env={**os.environ, "TU_SANDBOX_DIR": str(root)},
            )
            r = json.loads(out.stdout.strip().splitlines()[-1])
            rounds.append(r)
            print(
                f"round {i + 1}: {r['records']:,} records in {r['seconds']:.2f} s "
                f"(cpu {r['cpu_s']:.1f} s, others {r['others_cpu_s']:.1f} s) "
                f"({r['records_per_s']:,.0f}/s), peak +{r['peak_rss_mb']:,.0f} MB, "
                f"frames {r['frames_mb']:,.0f} MB",
                file=sys.stderr,
            )
        med = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
        print(f"\n| measure | median of {len(rounds)} rounds |")
        print("|---|---|")
        print(f"| records | {med['records']:,.0f} ({med['errors']:.0f} errors) |")
        print(
            f"| end-to-end seconds | {med['seconds']:.2f} "
            f"(inside fetch: {med['fetch_seconds']:.2f}) |"
        )
        print(f"| records/s | {med['records_per_s']:,.0f} |")
        print(
            f"| CPU seconds: this process / other processes meanwhile | {med['cpu_s']:.1f} / "
            f"{med['others_cpu_s']:.1f} |"
        )
        print(f"| peak RSS above start | {med['peak_rss_mb']:,.0f} MB |")
        print(
            f"| final frames (estimated_size) | {med['frames_mb']:,.0f} MB "
            f"({med['columns']:.0f} main columns) |"
        )
        print(f"| peak / frames | {med['peak_over_frames']:.2f}x |")
        if args.json:
            args.json.write_text(json.dumps({"rounds": rounds, "median": med}, indent=1))
    finally:
        if started is not None:
            manager.down(root=started)


if __name__ == "__main__":
    main()
