"""Benchmark: Confluent-framed Machine Insights values -> flattened Polars frames.

    .venv/bin/python benchmarks/bench_decode.py                       # 200,000 records
    .venv/bin/python benchmarks/bench_decode.py --records 50000 --rounds 5 --json out.json

Generates ``--records`` realistic Machine Insights messages in memory (fixed seed: 5-15 insights
set per record, a location most of the time, FaultCodes / AdvancedSensors arrays on some, CAN
messages on 12%), and encodes the same values in two shapes, framed with the 5-byte Confluent
header:

* **published**: the Streaming API's published shape (streaming_format.md): ``ParsedValue`` as
  ``["null","double","string"]``, ``CanMessageValues`` a union of three records, each insight's
  value field named after it, some unit fields named differently, enum insights as strings,
  plain ``long`` epoch-ms times (:func:`published_schema`, version 3 with ``--published-version``
  other versions);
* **union-free**: the sandbox's schema v2 (nullable fields only, ``timestamp-millis``).

In one run it times, from the list of framed ``bytes`` a consumer hands you to the flattened
``main`` frame plus long frames (docs/frames.md):

(a) ours on the published shape: a records frame -> ``_decode.decode`` -> ``machine_insights
    .flatten`` (the compiled transcoder when built, else the fastavro fallback);
(b) ours on the union-free shape, the same values;
(c) the path Confluent's docs suggest, on the published shape: ``AvroDeserializer`` per message
    -> dicts (union values put in one field per branch, as a frame needs) -> ``pl.from_dicts``
    (full inference) -> the same ``flatten``.

(c) runs on the first ``--baseline-records`` records (default 20,000) to keep the run short;
all are reported in records/s (median of ``--rounds``). Frames are compared cell for cell:
(a) with (c) on those records, (a) with (b) on all.

Peak memory: each path runs once more in a fresh subprocess on the same records; a thread
samples the process RSS every 2 ms and the reported figure is peak RSS minus RSS just before the
path started (the framed values already loaded). This counts Rust/Arrow allocations, which
tracemalloc would miss.
"""

from __future__ import annotations

import argparse
import copy
import gc
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
from datetime import datetime
from pathlib import Path
from typing import Any

import fastavro
import polars as pl

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tu_analytics import _decode  # noqa: E402
from tu_analytics._decode import planning  # noqa: E402
from tu_analytics.formats import machine_insights as mi  # noqa: E402
from tu_analytics.formats._catalogue import catalogue  # noqa: E402

SCHEMAS = ROOT / "tu_analytics" / "sandbox" / "schemas"
SCHEMA_PATH = SCHEMAS / "machine_insights_v2.avsc"
SCHEMA_ID = 1  # what the mock registry assigns the first schema
START_MS = 1_717_200_000_000  # 2024-06-01 00:00 UTC
CAN_SHARE = 0.12
NAMESPACE = json.loads(SCHEMA_PATH.read_text())["namespace"]
BRANCHES = {"VALUE": "CanMessageValue", "MIN_MAX": "CanMessageMinMax",
            "ACCUMULATED": "CanMessageAccumulated"}


# -- the published shape --------------------------------------------------------------------


def value_field(insight: str) -> str:
    """Each insight's value field has its own name (published format)."""
    return insight[0].lower() + insight[1:]


def unit_field(insight: str) -> str:
    """Unit-field naming "sometimes varies": every fifth catalogued insight differs."""
    names = list(catalogue())
    return "UnitOfMeasure" if insight in names and names.index(insight) % 5 == 0 else "unit"


_VALUE_TYPES = {"double": "double", "boolean": "boolean", "count": "long", "enum": "string"}


def _no_logical_times(t: Any) -> Any:
    """Plain ``long`` epoch ms wherever the sandbox says ``timestamp-millis``."""
    if isinstance(t, dict):
        if t.get("logicalType") == "timestamp-millis":
            return "long"
        return {k: _no_logical_times(v) for k, v in t.items()}
    if isinstance(t, list):
        return [_no_logical_times(x) for x in t]
    return t


def _insight_record(name: str, version: int, value_type: str) -> dict[str, Any]:
    ts: Any = {"type": "long", "logicalType": "timestamp-millis"} if version >= 3 else "long"
    return {"type": "record", "name": f"{name}Insight", "fields": [
        {"name": value_field(name), "type": ["null", value_type], "default": None},
        {"name": unit_field(name), "type": ["null", "string"], "default": None},
        {"name": "datetime", "type": ["null", ts], "default": None}]}


def _can_item(item: dict[str, Any], version: int) -> dict[str, Any]:
    item = copy.deepcopy(item)
    fields = [f for f in item["fields"] if f["name"] != "ParsedStringValue"]
    for f in fields:
        if f["name"] == "ParsedValue":
            f["type"] = ["null", "double", "string"] if version >= 3 else ["null", "double"]
        if f["name"] == "CanMessageValues":
            value = {"name": "value", "type": ["null", "double"], "default": None}
            f["type"] = ["null",
                         {"type": "record", "name": "CanMessageValue", "fields": [value]},
                         {"type": "record", "name": "CanMessageMinMax", "fields": [
                             {**value, "name": "MinValue"}, {**value, "name": "MaxValue"}]},
                         {"type": "record", "name": "CanMessageAccumulated", "fields": [value]}]
    return {**item, "fields": fields}


def published_schema(version: int = 3) -> dict[str, Any]:
    """The published shape, writer-schema version 1-3 (each BACKWARD compatible with the last):
    v1 on the sandbox's v1 fields with plain ``long`` times; v2 adds optional fields (the lamp
    insights); v3 has ``timestamp-millis`` insight times and ``ParsedValue`` widened to
    ``["null","double","string"]``."""
    base = json.loads((SCHEMAS / f"machine_insights_v{min(version, 2)}.avsc").read_text())
    cat = catalogue()
    fields = []
    hours_defined = False
    for f in base["fields"]:
        name, info = f["name"], cat.get(f["name"])
        if name.endswith("Lamp") or (info is not None and not info.is_hours):
            vt = "boolean" if info is None else _VALUE_TYPES[info.value_type]
            t: Any = ["null", _insight_record(name, version, vt)]
        elif info is not None:  # Cumulative*Hours: {Hour, datetime}, one named type
            t = ["null", "HoursRecord"] if hours_defined else ["null", {
                "type": "record", "name": "HoursRecord", "fields": [
                    {"name": "Hour", "type": ["null", "double"], "default": None},
                    {"name": "datetime", "type": ["null", "long"], "default": None}]}]
            hours_defined = True
        elif name == "CANMessages":
            t = ["null", {"type": "array", "items": _can_item(f["type"][1]["items"], version)}]
        else:
            t = _no_logical_times(f["type"])
        fields.append({"name": name, "type": t, "default": None})
    return {**base, "fields": fields}


def to_published(rec: dict[str, Any], version: int = 3) -> dict[str, Any]:
    """A sandbox-shaped record as the published shape carries the same values."""
    cat = catalogue()
    out: dict[str, Any] = {}
    for name, v in rec.items():
        info = cat.get(name)
        if v is not None and (name.endswith("Lamp") or (info is not None and not info.is_hours)):
            out[name] = {value_field(name): v["value"], unit_field(name): v["unit"],
                         "datetime": v["datetime"]}
        elif name == "CANMessages" and v is not None:
            out[name] = [_published_can(item, version) for item in v]
        else:
            out[name] = v
    return out


def _published_can(item: dict[str, Any], version: int) -> dict[str, Any]:
    item = dict(item)
    text = item.pop("ParsedStringValue", None)
    if text is not None and version >= 3:
        item["ParsedValue"] = text
    values = item.get("CanMessageValues")
    if values is not None:
        branch = BRANCHES[values["Kind"]]
        body = ({"MinValue": values["MinValue"], "MaxValue": values["MaxValue"]}
                if branch == "CanMessageMinMax" else {"value": values["value"]})
        # fastavro takes the branch by full name (CanMessageValue and CanMessageAccumulated
        # have the same fields).
        item["CanMessageValues"] = (f"{NAMESPACE}.{branch}", body)
    return item


# -- data ---------------------------------------------------------------------------------------


def _insight_value(rng: random.Random, value_type: str, enum_values: tuple[str, ...]) -> Any:
    if value_type == "double":
        return round(rng.uniform(-50, 5000), 3)
    if value_type == "boolean":
        return rng.random() < 0.5
    if value_type == "count":
        return rng.randrange(1_000_000)
    return rng.choice(enum_values)


def _can_message(rng: random.Random, i: int, t: int) -> dict[str, Any]:
    kind = rng.choice(list(BRANCHES))
    low, high = sorted((rng.uniform(0, 600), rng.uniform(0, 600)))
    text = rng.random() < 0.2
    return {"datetime": t, "UnitOfMeasurement": "kPa", "VariableId": rng.randrange(9999),
            "VariableName": "Oil pressure",
            "ParsedValue": None if text else rng.uniform(0, 600),
            "ParsedStringValue": rng.choice(["on", "off"]) if text else None,
            "CanMessageValues": {"Kind": kind, "value": None if kind == "MIN_MAX" else low,
                                 "MinValue": low if kind == "MIN_MAX" else None,
                                 "MaxValue": high if kind == "MIN_MAX" else None},
            "CanMessageData": {"CanId": rng.randrange(2**29), "SourceAddress": 0,
                               "BinaryValue": rng.randbytes(8), "Counter": i,
                               "CapturingPeriod": 1000, "CanType": "J1939"}}


def generate_records(n: int, seed: int = 7, schema_path: Path = SCHEMA_PATH
                     ) -> list[dict[str, Any]]:
    """``n`` sandbox-shaped Machine Insights records, deterministic for a seed."""
    schema = json.loads(schema_path.read_text())
    cat = catalogue()
    fields = [f["name"] for f in schema["fields"]]
    insights = [f for f in fields if f in cat or f.endswith("Lamp")]
    rng = random.Random(seed)
    machines = [(f"M{i:05d}", 100_000 + i, f"TS{i:07d}") for i in range(800)]
    out: list[dict[str, Any]] = []
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
        if rng.random() < CAN_SHARE:
            rec["CANMessages"] = [_can_message(rng, i, t) for _ in range(rng.randint(1, 5))]
        if rng.random() < 0.05:
            rec["AdvancedSensors"] = [{"datetime": t, "UnitOfMeasurement": "celsius",
                                       "SensorId": rng.randrange(100), "SensorName": "Hydraulic",
                                       "NumericValue": rng.uniform(10, 90), "Source": "MODBUS"}]
        out.append(rec)
    return out


def encode(recs: list[dict[str, Any]], schema: dict[str, Any], sid: int = SCHEMA_ID
           ) -> list[bytes]:
    """Confluent-framed Avro bodies (fastavro's writer)."""
    parsed = fastavro.parse_schema(schema)
    header = b"\x00" + struct.pack(">i", sid)
    buf = io.BytesIO()
    out = []
    for rec in recs:
        buf.seek(0)
        buf.truncate()
        buf.write(header)
        fastavro.schemaless_writer(buf, parsed, rec)
        out.append(buf.getvalue())
    return out


def generate(n: int, seed: int = 7) -> tuple[list[bytes], list[bytes]]:
    """``n`` framed records in the published shape (v3) and the union-free shape."""
    recs = generate_records(n, seed)
    free = encode(recs, json.loads(SCHEMA_PATH.read_text()))
    return encode([to_published(r) for r in recs], published_schema(3)), free


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


# -- the paths ------------------------------------------------------------------------------------


def ours(values: list[bytes], schema_json: str) -> Any:
    decoded = _decode.decode(records_frame(values), {SCHEMA_ID: schema_json})
    assert decoded.errors.height == 0
    return mi.flatten(decoded.records)


def _epoch_ms(v: Any) -> Any:
    return round(v.timestamp() * 1000) if isinstance(v, datetime) else v


def plain_unions(d: dict[str, Any]) -> dict[str, Any]:
    """AvroDeserializer's dict (``return_record_name=True``) -> what one frame can hold: a
    record branch as ``(name, record)`` unwrapped, a union of several non-null types as one
    field per branch (the layout ``_decode`` gives), times as epoch ms (versions differ in
    plain ``long`` and ``timestamp-millis``; one column cannot mix ints and datetimes)."""
    out = {k: (v[1] if isinstance(v, tuple) else v) for k, v in d.items()}
    for k, v in out.items():
        if isinstance(v, dict) and isinstance(v.get("datetime"), datetime):
            out[k] = {**v, "datetime": _epoch_ms(v["datetime"])}
    if out.get("CANMessages"):
        out["CANMessages"] = [dict(item) for item in out["CANMessages"]]
    for item in out.get("CANMessages") or []:
        item["datetime"] = _epoch_ms(item.get("datetime"))
        pv = item.get("ParsedValue")
        item["ParsedValue"] = None if pv is None else {
            "double": pv if isinstance(pv, float) else None,
            "string": pv if isinstance(pv, str) else None}
        data = item.get("CanMessageData")
        item["CanMessageData"] = data[1] if isinstance(data, tuple) else data
        cv = item.get("CanMessageValues")
        item["CanMessageValues"] = None if cv is None else {
            b: (cv[1] if cv[0].rpartition(".")[2] == b else None) for b in BRANCHES.values()}
    return out


def confluent_docs(values: list[bytes], schema_json: str) -> Any:
    from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
    from confluent_kafka.schema_registry.avro import AvroDeserializer
    from confluent_kafka.serialization import MessageField, SerializationContext

    client = SchemaRegistryClient.new_client({"url": "mock://bench"})
    sid = client.register_schema("machine-insights-value", Schema(schema_json, "AVRO"))
    assert sid == SCHEMA_ID, "the mock registry numbers schemas from 1"
    deserializer = AvroDeserializer(client, return_record_name=True)
    ctx = SerializationContext("machine-insights", MessageField.VALUE)
    dicts = [plain_unions(deserializer(v, ctx)) for v in values]
    frame = pl.from_dicts(dicts, infer_schema_length=None)
    kafka = records_frame(values).drop("value").with_columns(schema_id=pl.lit(sid, pl.Int32))
    return mi.flatten(pl.concat([kafka, frame], how="horizontal"))


PATHS: dict[str, Callable[[list[bytes], str], Any]] = {"ours": ours, "confluent": confluent_docs}


def timed(path: str, values: list[bytes], schema_json: str) -> float:
    t0 = time.perf_counter()
    PATHS[path](values, schema_json)
    return time.perf_counter() - t0


def same(a: Any, b: Any) -> bool:
    """Frames equal cell for cell (b cast to a's dtypes: inference may pick wider ones)."""
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
    schema_json = json.dumps(published_schema(3))
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
    published, free = generate(args.records, args.seed)
    gen_s = time.perf_counter() - t0
    nbase = min(args.baseline_records, len(published))
    pub_json, free_json = json.dumps(published_schema(3)), SCHEMA_PATH.read_text()
    mean_bytes = sum(map(len, published)) / len(published)
    native = planning.native_module() is not None
    print(f"generated {len(published):,} records ({mean_bytes:.0f} B mean, {CAN_SHARE:.0%} with "
          f"CAN messages) in {gen_s:.1f}s; baseline on the first {nbase:,}; "
          f"transcoder built: {native}", flush=True)
    ncheck = min(nbase, 5_000)
    equal = {
        "published_vs_confluent": same(ours(published[:ncheck], pub_json),
                                       confluent_docs(published[:ncheck], pub_json)),
        "published_vs_union_free": same(ours(published, pub_json), ours(free, free_json)),
    }
    print(f"frames identical: {equal}", flush=True)

    runs: dict[str, tuple[str, list[bytes], str]] = {
        "published": ("ours", published, pub_json),
        "union_free": ("ours", free, free_json),
        "confluent": ("confluent", published[:nbase], pub_json),
    }
    times: dict[str, list[float]] = {k: [] for k in runs}
    names = list(runs)
    for r in range(args.rounds):
        # Each path in turn goes first, after a full collection: the Confluent path leaves
        # millions of dicts behind, which would otherwise slow whichever path follows it.
        for name in names[r % len(names):] + names[:r % len(names)]:
            path, values, schema_json = runs[name]
            gc.collect()
            times[name].append(timed(path, values, schema_json))
        print(f"round {r + 1}: " + ", ".join(f"{k} {v[-1]:.2f}s" for k, v in times.items()),
              flush=True)
    rate = {k: len(runs[k][1]) / statistics.median(v) for k, v in times.items()}
    memory: dict[str, int | None] = {"ours": None, "ours_full": None, "confluent": None}
    if not args.no_memory:
        memory["ours"] = measure_memory("ours", published[:nbase])
        memory["confluent"] = measure_memory("confluent", published[:nbase])
        memory["ours_full"] = measure_memory("ours", published)
    report(args, rate, times, memory, equal, nbase, len(published), native)


def report(args: argparse.Namespace, rate: dict[str, float], times: dict[str, list[float]],
           memory: dict[str, int | None], equal: dict[str, bool], nbase: int, n: int,
           native: bool) -> None:
    def mb(b: int | None) -> str:
        return "-" if b is None else f"{b / 2**20:,.0f} MB"

    vs_free = rate["published"] / rate["union_free"]
    vs_confluent = rate["published"] / rate["confluent"]
    print()
    print(f"{'path':<52}{'records':>10}{'records/s':>12}{'peak RSS delta':>18}")
    print(f"{'ours, published shape: decode + flatten':<52}{n:>10,}{rate['published']:>12,.0f}"
          f"{mb(memory['ours_full']):>18}")
    print(f"{'ours, union-free shape (same values)':<52}{n:>10,}{rate['union_free']:>12,.0f}"
          f"{'':>18}")
    print(f"{'ours, published (memory on the baseline records)':<52}{nbase:>10,}{'':>12}"
          f"{mb(memory['ours']):>18}")
    print(f"{'Confluent docs, published: AvroDeserializer + frame':<52}{nbase:>10,}"
          f"{rate['confluent']:>12,.0f}{mb(memory['confluent']):>18}")
    print(f"published / union-free: {vs_free:.0%} (target >= 80%); published / Confluent: "
          f"{vs_confluent:.1f}x (target >= 40x); medians of {args.rounds} rounds; "
          f"cpus={os.cpu_count()}; transcoder: {native}; frames identical: {equal}")
    if args.json:
        args.json.write_text(json.dumps({
            "records": n, "baseline_records": nbase, "rounds": args.rounds,
            "can_share": CAN_SHARE, "transcoder": native,
            "records_per_s": rate, "published_vs_union_free": vs_free,
            "published_vs_confluent": vs_confluent, "seconds": times,
            "peak_rss_delta_bytes": memory, "frames_identical": equal,
            "memory_method": "peak RSS (sampled every 2 ms) minus RSS before the path, "
                             "one fresh subprocess per path",
            "python": platform.python_version(), "polars": pl.__version__,
            "cpus": os.cpu_count(),
        }, indent=2) + "\n")


if __name__ == "__main__":
    main()
