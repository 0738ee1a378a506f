"""Benchmark: Confluent-framed Machine Insights values -> flattened Polars frames.

    .venv/bin/python benchmarks/bench_decode.py                       # 200,000 records
    .venv/bin/python benchmarks/bench_decode.py --records 50000 --rounds 5 --json out.json

Generates ``--records`` realistic Machine Insights messages in memory (fastavro, fixed seed,
sandbox schema v2: 5-15 insights set per record, a location most of the time, FaultCodes /
CANMessages / AdvancedSensors arrays on some), framed with the 5-byte Confluent header. Then,
in one run, times two paths from the list of framed ``bytes`` a consumer hands you to the
flattened ``main`` frame plus long frames (docs/frames.md):

(a) this project: a records frame -> ``_decode.decode`` -> ``machine_insights.flatten``;
(b) the path Confluent's docs suggest: ``AvroDeserializer`` per message -> dicts ->
    ``pl.from_dicts`` (full inference) -> the same ``flatten``.

(b) runs on the first ``--baseline-records`` records (default 20,000) to keep the run short;
both are reported in records/s (median of ``--rounds``). The two paths' frames are compared
cell for cell on those records.

Peak memory: each path runs once more in a fresh subprocess on the same records; a thread
samples the process RSS every 2 ms and the reported figure is peak RSS minus RSS just before the
path started (the framed values already loaded). This counts Rust/Arrow allocations, which
tracemalloc would miss.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import pickle
import platform
import random
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fastavro
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tu_analytics import _decode  # noqa: E402
from tu_analytics.formats import machine_insights as mi  # noqa: E402
from tu_analytics.formats._catalogue import catalogue  # noqa: E402

SCHEMA_PATH = ROOT / "tu_analytics" / "sandbox" / "schemas" / "machine_insights_v2.avsc"
SCHEMA_ID = 1  # what the mock registry assigns the first schema
START_MS = 1_717_200_000_000  # 2024-06-01 00:00 UTC


# -- data ---------------------------------------------------------------------------------------


def _insight_value(rng: random.Random, value_type: str, enum_values: tuple[str, ...]) -> Any:
    if value_type == "double":
        return round(rng.uniform(-50, 5000), 3)
    if value_type == "boolean":
        return rng.random() < 0.5
    if value_type == "count":
        return rng.randrange(1_000_000)
    return rng.choice(enum_values)


def generate(n: int, seed: int = 7) -> list[bytes]:
    """``n`` framed Machine Insights messages (schema v2), deterministic for a seed."""
    schema = json.loads(SCHEMA_PATH.read_text())
    parsed = fastavro.parse_schema(schema)
    cat = catalogue()
    fields = [f["name"] for f in schema["fields"]]
    insights = [f for f in fields if f in cat or f.endswith("Lamp")]
    rng = random.Random(seed)
    machines = [(f"M{i:05d}", 100_000 + i, f"TS{i:07d}") for i in range(800)]
    header = b"\x00" + struct.pack(">i", SCHEMA_ID)
    out: list[bytes] = []
    buf = io.BytesIO()
    for i in range(n):
        t = START_MS + i * 250 + rng.randrange(60_000)
        mid, unit_id, tsn = rng.choice(machines)
        rec: dict[str, Any] = {
            "Metadata": {"MachineId": mid, "UnitId": unit_id, "TelematicSerialNumber": tsn,
                         "ExternalReferenceNumber": None if rng.random() < 0.7 else f"X{unit_id}"},
            "EquipmentHeader": {"UnitInstallDateTime": START_MS - 86_400_000 * 400,
                                "OEMName": "Caterpillar", "Model": "320 GC",
                                "EquipmentID": f"EX-{unit_id}", "SerialNumber": f"SN{unit_id}",
                                "PIN": None},
        }
        if rng.random() < 0.8:
            rec["Location"] = {"Latitude": rng.uniform(54, 58), "Longitude": rng.uniform(8, 13),
                               "Altitude": rng.uniform(0, 120), "AltitudeUnits": "metres",
                               "datetime": t}
        if rng.random() < 0.5:
            rec["LocationMetadata"] = {"AccuracyRadius": rng.uniform(1, 10),
                                       "HighAccuracy": rng.random() < 0.8}
        if rng.random() < 0.15:
            rec["LocationAddress"] = {"Country": "DK", "Zipcode": "8000", "City": "Aarhus",
                                      "Address": "Havnegade 1", "GeoHash": "u1zr2", "datetime": t}
        for name in rng.sample(insights, rng.randint(5, 15)):
            info = cat.get(name)
            if info is not None and info.is_hours:
                rec[name] = {"Hour": rng.uniform(0, 20_000), "datetime": t}
            elif info is None:  # a v2 lamp
                rec[name] = {"value": rng.random() < 0.1, "unit": None, "datetime": t}
            else:
                rec[name] = {"value": _insight_value(rng, info.value_type, info.enum_values),
                             "unit": info.unit, "datetime": t}
        if rng.random() < 0.25:
            rec["FaultCodes"] = [
                {"CodeIdentifier": f"SPN{rng.randrange(5000)}-FMI{rng.randrange(32)}",
                 "CodeDescription": "Engine coolant temperature high", "CodeSeverity": "HIGH",
                 "CodeSource": "J1939", "datetime": t,
                 "datetimeCleared": None if rng.random() < 0.7 else t + 60_000}
                for _ in range(rng.randint(1, 3))]
        if rng.random() < 0.1:
            rec["CANMessages"] = [
                {"datetime": t, "UnitOfMeasurement": "kPa", "VariableId": rng.randrange(9999),
                 "VariableName": "Oil pressure", "ParsedValue": rng.uniform(0, 600),
                 "CanMessageValues": {"Kind": "VALUE", "value": rng.uniform(0, 600)},
                 "CanMessageData": {"CanId": rng.randrange(2**29), "SourceAddress": 0,
                                    "BinaryValue": rng.randbytes(8), "Counter": i,
                                    "CapturingPeriod": 1000, "CanType": "J1939"}}
                for _ in range(rng.randint(1, 5))]
        if rng.random() < 0.05:
            rec["AdvancedSensors"] = [{"datetime": t, "UnitOfMeasurement": "celsius",
                                       "SensorId": rng.randrange(100), "SensorName": "Hydraulic",
                                       "NumericValue": rng.uniform(10, 90), "Source": "MODBUS"}]
        buf.seek(0)
        buf.truncate()
        buf.write(header)
        fastavro.schemaless_writer(buf, parsed, rec)
        out.append(buf.getvalue())
    return out


def records_frame(values: list[bytes]) -> pl.DataFrame:
    """What the consumer side hands ``decode``: Kafka columns plus raw key and value."""
    n = len(values)
    return pl.DataFrame({
        "partition": pl.Series([0] * n, dtype=pl.Int32),
        "offset": pl.int_range(0, n, dtype=pl.Int64, eager=True),
        "kafka_timestamp": pl.int_range(START_MS, START_MS + n, eager=True)
        .cast(pl.Datetime("ms", "UTC")),
        "key": pl.Series([None] * n, dtype=pl.Binary),
        "value": pl.Series(values, dtype=pl.Binary),
    })


# -- the two paths ------------------------------------------------------------------------------


def ours(values: list[bytes], schema_json: str) -> Any:
    decoded = _decode.decode(records_frame(values), {SCHEMA_ID: schema_json})
    assert decoded.errors.height == 0
    return mi.flatten(decoded.records)


def confluent_docs(values: list[bytes], schema_json: str) -> Any:
    from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroDeserializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    client = SchemaRegistryClient.new_client({"url": "mock://bench"})
    sid = client.register_schema("machine-insights-value", Schema(schema_json, "AVRO"))
    assert sid == SCHEMA_ID, "the mock registry numbers schemas from 1"
    deserializer = AvroDeserializer(client)
    ctx = SerializationContext("machine-insights", MessageField.VALUE)
    dicts = [deserializer(v, ctx) for v in values]
    frame = pl.from_dicts(dicts, infer_schema_length=None)
    kafka = records_frame(values).drop("value").with_columns(schema_id=pl.lit(sid, pl.Int32))
    return mi.flatten(pl.concat([kafka, frame], how="horizontal"))


PATHS: dict[str, Callable[[list[bytes], str], Any]] = {"ours": ours, "confluent": confluent_docs}


def timed(path: str, values: list[bytes], schema_json: str) -> float:
    t0 = time.perf_counter()
    PATHS[path](values, schema_json)
    return time.perf_counter() - t0


def same_frames(values: list[bytes], schema_json: str) -> bool:
    a, b = ours(values, schema_json), confluent_docs(values, schema_json)
    if a.main.columns != b.main.columns or not a.main.equals(b.main.cast(a.main.schema)):
        return False
    return all(a.long[k].equals(b.long[k].cast(a.long[k].schema)) for k in a.long)


# -- memory, in a fresh process per path ----------------------------------------------------


def _rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def child(path: str, data_file: str) -> None:
    """Run one path once; print its peak RSS delta (bytes) as JSON."""
    with open(data_file, "rb") as fh:
        values = pickle.load(fh)  # our own temp file
    schema_json = SCHEMA_PATH.read_text()
    PATHS[path](values[:50], schema_json)  # warm imports and caches
    before = _rss()
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss())
            time.sleep(0.002)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    result = PATHS[path](values, schema_json)
    done.set()
    sampler.join()
    peak[0] = max(peak[0], _rss())
    del result
    print(json.dumps({"path": path, "records": len(values), "peak_delta": peak[0] - before}))


def measure_memory(path: str, values: list[bytes]) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        data_file = os.path.join(tmp, "values.pkl")
        with open(data_file, "wb") as fh:
            pickle.dump(values, fh)
        out = subprocess.run(
            [sys.executable, __file__, "--child", path, data_file],
            check=True, capture_output=True, text=True,
        )
    return int(json.loads(out.stdout.strip().splitlines()[-1])["peak_delta"])


# -- main ---------------------------------------------------------------------------------------


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--records", type=int, default=200_000)
    ap.add_argument("--baseline-records", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--no-memory", action="store_true", help="skip the subprocess memory runs")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(*args.child)
        return

    t0 = time.perf_counter()
    values = generate(args.records, args.seed)
    gen_s = time.perf_counter() - t0
    nbase = min(args.baseline_records, len(values))
    schema_json = SCHEMA_PATH.read_text()
    mean_bytes = sum(map(len, values)) / len(values)
    print(f"generated {len(values):,} records ({mean_bytes:.0f} B mean) in {gen_s:.1f}s; "
          f"baseline on the first {nbase:,}", flush=True)
    equal = same_frames(values[:min(nbase, 5_000)], schema_json)
    print(f"frames identical on {min(nbase, 5_000):,} records: {equal}", flush=True)

    times: dict[str, list[float]] = {"ours": [], "confluent": []}
    for r in range(args.rounds):
        times["ours"].append(timed("ours", values, schema_json))
        times["confluent"].append(timed("confluent", values[:nbase], schema_json))
        print(f"round {r + 1}: ours {times['ours'][-1]:.2f}s, "
              f"confluent {times['confluent'][-1]:.2f}s", flush=True)
    rate = {
        "ours": len(values) / statistics.median(times["ours"]),
        "confluent": nbase / statistics.median(times["confluent"]),
    }
    memory: dict[str, int | None] = {"ours": None, "ours_full": None, "confluent": None}
    if not args.no_memory:
        memory["ours"] = measure_memory("ours", values[:nbase])
        memory["confluent"] = measure_memory("confluent", values[:nbase])
        memory["ours_full"] = measure_memory("ours", values)
    report(args, rate, times, memory, equal, nbase, len(values))


def report(args: argparse.Namespace, rate: dict[str, float], times: dict[str, list[float]],
           memory: dict[str, int | None], equal: bool, nbase: int, n: int) -> None:
    def mb(b: int | None) -> str:
        return "-" if b is None else f"{b / 2**20:,.0f} MB"

    ratio = rate["ours"] / rate["confluent"]
    print()
    print(f"{'path':<44}{'records':>10}{'records/s':>12}{'peak RSS delta':>18}")
    print(f"{'ours: decode + flatten':<44}{n:>10,}{rate['ours']:>12,.0f}"
          f"{mb(memory['ours_full']):>18}")
    print(f"{'ours (memory on the baseline records)':<44}{nbase:>10,}{'':>12}"
          f"{mb(memory['ours']):>18}")
    print(f"{'Confluent docs: AvroDeserializer + from_dicts':<44}{nbase:>10,}"
          f"{rate['confluent']:>12,.0f}{mb(memory['confluent']):>18}")
    print(f"ratio: {ratio:.1f}x (target 40x); medians of {args.rounds} rounds; "
          f"cpus={os.cpu_count()}; frames identical: {equal}")
    if args.json:
        args.json.write_text(json.dumps({
            "records": n, "baseline_records": nbase, "rounds": args.rounds,
            "records_per_s": rate, "ratio": ratio, "seconds": times,
            "peak_rss_delta_bytes": memory, "frames_identical": equal,
            "memory_method": "peak RSS (sampled every 2 ms) minus RSS before the path, "
                             "one fresh subprocess per path",
            "python": platform.python_version(), "polars": pl.__version__,
            "cpus": os.cpu_count(),
        }, indent=2) + "\n")


if __name__ == "__main__":
    main()
