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
    parts = _timed_parts()
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
    connect_s = parts["partitions"] + parts["check"]
    return {
        "records": win.main.height + win.errors.height,
        "errors": win.errors.height,
        "seconds": secs,
        "connect_seconds": connect_s,
        "plan_seconds": parts["plan"] - parts["partitions"],
        "fetch_seconds": parts["fetch"],
        # Chunks decode on worker threads during the fetch; this is what is left after it.
        "decode_seconds": secs - parts["plan"] - parts["check"] - parts["fetch"],
        "records_per_s": (win.main.height + win.errors.height) / secs,
        "peak_rss_mb": peak[0] - base,
        "frames_mb": frames_mb,
        "peak_over_frames": (peak[0] - base) / frames_mb if frames_mb else float("nan"),
        "columns": win.main.width,
        "cpu_s": _own_cpu_s() - own0,
        "others_cpu_s": others,
    }


def _timed_parts() -> dict[str, float]:
    """Wrap the pipeline's steps to time them: connect (client start + the topic's
    metadata and the registry check), plan (offset look-ups), fetch (the read loop)."""
    from tu_analytics import _kafka, _pipeline, _registry

    parts = {"partitions": 0.0, "check": 0.0, "plan": 0.0, "fetch": 0.0}

    def timing(owner: Any, name: str, key: str) -> None:
        real = getattr(owner, name)

        def wrapped(*args: Any, **kw: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return real(*args, **kw)
            finally:
                parts[key] += time.perf_counter() - t0

        setattr(owner, name, wrapped)

    timing(_kafka.KafkaConsumer, "partitions", "partitions")
    timing(_registry.Registry, "check", "check")
    timing(_pipeline, "plan", "plan")
    timing(_pipeline, "read", "fetch")
    return parts


def _partition_ends(consumer: Any, topic: str, start_ms: int,
                    end_ms: int) -> dict[int, tuple[int, int]]:
    from confluent_kafka import TopicPartition

    md = consumer.list_topics(topic, timeout=10)
    parts = sorted(md.topics[topic].partitions)
    lo = consumer.offsets_for_times([TopicPartition(topic, p, start_ms) for p in parts], 10)
    hi = consumer.offsets_for_times([TopicPartition(topic, p, end_ms) for p in parts], 10)
    marks = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), 10)[1] for p in parts}
    return {p: (a.offset if a.offset >= 0 else marks[p], b.offset if b.offset >= 0 else marks[p])
            for p, a, b in zip(parts, lo, hi, strict=True)}


def other_round(env: dict[str, str], start: str, end: str, mode: str) -> dict[str, float]:
    """The comparison paths on the same records, in a subprocess: ``confluent`` is the
    Confluent docs' consumer + ``AvroDeserializer`` per message (to dicts, then a frame);
    ``bare`` is the fetch alone (confluent-kafka ``consume``, values only, no decode)."""
    import polars as pl
    from confluent_kafka import Consumer, TopicPartition
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroDeserializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    import tu_analytics as tu

    s = tu.Settings.resolve(env=env)
    own0 = _own_cpu_s()
    a = int(datetime.fromisoformat(start).timestamp() * 1000)
    b = int(datetime.fromisoformat(end).timestamp() * 1000)
    t0 = time.perf_counter()
    consumer = Consumer({**s.kafka_config(), "group.id": f"bench-{mode}",
                         "enable.auto.commit": False})
    ranges = _partition_ends(consumer, s.topic, a, b)
    consumer.assign([TopicPartition(s.topic, p, lo) for p, (lo, _) in ranges.items()])
    todo = {p: hi for p, (lo, hi) in ranges.items() if hi > lo}
    deser = None
    if mode == "confluent":
        sr = SchemaRegistryClient(s.registry_config())
        deser = AvroDeserializer(sr)
        ctx = SerializationContext(s.topic, MessageField.VALUE)
    rows: list[Any] = []
    n = 0
    while todo:
        for m in consumer.consume(num_messages=20_000 if mode == "bare" else 1, timeout=1):
            if m.error() or m.partition() not in todo or m.offset() >= todo[m.partition()]:
                continue
            n += 1
            rows.append(deser(m.value(), ctx) if deser is not None else m.value())
            if m.offset() + 1 >= todo[m.partition()]:
                del todo[m.partition()]
    if deser is not None:
        pl.from_dicts(rows, infer_schema_length=None)
    consumer.close()
    secs = time.perf_counter() - t0
    return {"records": n, "seconds": secs, "records_per_s": n / secs,
            "cpu_s": _own_cpu_s() - own0}


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
    register_subject(state)
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


def register_subject(state: Any) -> None:
    """The topic's value subject (TopicNameStrategy), as its producer would register it:
    windows check that it exists before reading."""
    from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

    from tu_analytics.sandbox.provision import operator_registry_config, schema_text

    with SchemaRegistryClient(operator_registry_config(state)) as sr:
        sr.register_schema(f"{TOPIC}-value",
                           Schema(schema_text("machine_insights_v1.avsc"), "AVRO"))


def save_span(root: Path, n: int, span: tuple[int, int]) -> None:
    (root / SPAN_FILE).write_text(
        json.dumps({"topic": TOPIC, "records": n, "first": span[0], "end": span[1]})
    )


def _round(spec: dict[str, Any], mode: str, root: Path) -> dict[str, float]:
    out = subprocess.run(
        [sys.executable, __file__, "--round", json.dumps({**spec, "mode": mode})],
        capture_output=True, text=True, check=False,
        env={**os.environ, "TU_SANDBOX_DIR": str(root)},
    )
    if out.returncode:
        sys.exit(f"the {mode} round failed:\n{out.stderr[-3000:]}")
    return dict(json.loads(out.stdout.strip().splitlines()[-1]))


def _report(rounds: list[dict[str, dict[str, float]]]) -> dict[str, float]:
    """Print the medians as a Markdown table; ratios are taken within each round."""
    med = {k: statistics.median(r["window"][k] for r in rounds) for k in rounds[0]["window"]}
    bare = statistics.median(r["bare"]["records_per_s"] for r in rounds)
    conf = [r["window"]["records_per_s"] / r["confluent"]["records_per_s"]
            for r in rounds if "confluent" in r]
    print(f"\n| measure | median of {len(rounds)} rounds |")
    print("|---|---|")
    print(f"| records | {med['records']:,.0f} ({med['errors']:.0f} errors) |")
    print(f"| end-to-end seconds | {med['seconds']:.2f} |")
    print(f"| connect / plan / fetch / decode after fetch (s) | {med['connect_seconds']:.2f} / "
          f"{med['plan_seconds']:.2f} / {med['fetch_seconds']:.2f} / "
          f"{med['decode_seconds']:.2f} |")
    print(f"| window records/s | {med['records_per_s']:,.0f} |")
    bare_cpu = statistics.median(r["bare"]["cpu_s"] for r in rounds)
    print(f"| bare fetch records/s (confluent-kafka, values only) | {bare:,.0f} "
          f"(window = {med['records_per_s'] / bare:.2f} of it; CPU seconds {bare_cpu:.2f}) |")
    if conf:
        cr = statistics.median(r["confluent"]["records_per_s"] for r in rounds if "confluent" in r)
        cpu = [r["confluent"]["cpu_s"] / r["window"]["cpu_s"] for r in rounds if "confluent" in r]
        print(f"| Confluent-docs path records/s | {cr:,.0f} (window "
              f"{statistics.median(conf):.0f}x, same rounds; CPU seconds "
              f"{statistics.median(cpu):.0f}x fewer) |")
    print(f"| CPU seconds: this process / other processes meanwhile | {med['cpu_s']:.1f} / "
          f"{med['others_cpu_s']:.1f} |")
    print(f"| peak RSS above start | {med['peak_rss_mb']:,.0f} MB |")
    print(f"| final frames (estimated_size) | {med['frames_mb']:,.0f} MB "
          f"({med['columns']:.0f} main columns) |")
    print(f"| peak / frames | {med['peak_over_frames']:.2f}x |")
    return med


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--confluent-rounds", type=int, default=1,
                    help="rounds that also time the (slow) Confluent-docs path")
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
        if spec.get("mode", "window") == "window":
            print(json.dumps(one_round(spec["env"], spec["start"], spec["end"])))
        else:
            print(json.dumps(other_round(spec["env"], spec["start"], spec["end"],
                                         spec["mode"])))
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
            register_subject(st)
            print(f"reusing {args.records:,} records in {TOPIC}", file=sys.stderr)
        a, b = span
        env = manager.env_vars(root=root, admin=True)
        env["TU_TOPIC"] = TOPIC
        spec = {
            "env": env,
            "start": datetime.fromtimestamp(a / 1000, UTC).isoformat(),
            "end": datetime.fromtimestamp(b / 1000, UTC).isoformat(),
        }
        rounds = []
        for i in range(args.rounds):
            modes = ["window", "bare"] + (["confluent"] if i < args.confluent_rounds else [])
            r = {mode: _round(spec, mode, root) for mode in modes}
            rounds.append(r)
            w = r["window"]
            print(
                f"round {i + 1}: {w['records']:,} records in {w['seconds']:.2f} s "
                f"(cpu {w['cpu_s']:.1f} s, others {w['others_cpu_s']:.1f} s) "
                f"({w['records_per_s']:,.0f}/s), peak +{w['peak_rss_mb']:,.0f} MB, "
                f"frames {w['frames_mb']:,.0f} MB; bare fetch {r['bare']['records_per_s']:,.0f}/s"
                + (f"; Confluent docs path {r['confluent']['records_per_s']:,.0f}/s"
                   if "confluent" in r else ""),
                file=sys.stderr,
            )
        med = _report(rounds)
        if args.json:
            args.json.write_text(json.dumps({"rounds": rounds, "median": med}, indent=1))
    finally:
        if started is not None:
            manager.down(root=started)


if __name__ == "__main__":
    main()
