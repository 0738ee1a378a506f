"""The published Streaming API shape, three writer-schema versions mixed in one batch, decoded
and flattened, and compared cell for cell with Confluent's AvroDeserializer (fastavro) on the
same bytes. In-memory bytes and Confluent's mock registry: no broker.

The shape (streaming_format.md): ``ParsedValue`` as ``["null","double","string"]`` (v3; v1 and
v2 have ``["null","double"]``), ``CanMessageValues`` a union of three records, each insight's
value field named after it, some unit fields named otherwise, enum insights as strings, plain
``long`` epoch-ms times (v1, v2) and ``timestamp-millis`` (v3); v2 adds optional fields.
"""

from __future__ import annotations

import importlib.util
import json
import random
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import polars as pl
import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from tu_analytics import _decode
from tu_analytics._decode import planning
from tu_analytics.formats import machine_insights as mi
from tu_analytics.formats._catalogue import catalogue

ROOT = Path(__file__).resolve().parents[2]


def _bench() -> ModuleType:
    """The benchmark's generator of the published shape (one definition for both)."""
    spec = importlib.util.spec_from_file_location("bench_decode",
                                                  ROOT / "benchmarks" / "bench_decode.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_decode"] = module
    spec.loader.exec_module(module)
    return module


bench = _bench()


@pytest.fixture(params=["transcoder", "fallback"], scope="module")
def native(request: pytest.FixtureRequest) -> Iterator[str]:
    """With the compiled transcoder, and without it (the fastavro fallback for unions)."""
    mp = pytest.MonkeyPatch()
    mp.setenv("TU_NATIVE", "1" if request.param == "transcoder" else "0")
    planning.native_module.cache_clear()
    planning.plan.cache_clear()
    if request.param == "transcoder":
        assert planning.native_module() is not None, "tu_analytics._native: run `make native`"
    yield request.param
    mp.undo()
    planning.native_module.cache_clear()
    planning.plan.cache_clear()


@pytest.fixture(scope="module")
def batch() -> dict[str, Any]:
    """~600 records over versions 1-3, framed with the mock registry's ids; Confluent's dicts."""
    client = SchemaRegistryClient.new_client({"url": "mock://published-shape"})
    schemas = {v: bench.published_schema(v) for v in (1, 2, 3)}
    ids = {v: client.register_schema(f"mi-v{v}-value", Schema(json.dumps(s), "AVRO"))
           for v, s in schemas.items()}
    rng = random.Random(99)
    values = []
    for i, rec in enumerate(bench.generate_records(600, seed=5)):
        v = rng.choice([1, 2, 3])
        names = {f["name"] for f in schemas[v]["fields"]}
        pub = bench.to_published({k: x for k, x in rec.items() if k in names}, v)
        values.append(bench.encode([pub], schemas[v], ids[v])[0])
        assert i == len(values) - 1
    deserializer = AvroDeserializer(client, return_record_name=True)
    ctx = SerializationContext("machine-insights", MessageField.VALUE)
    dicts = [deserializer(v, ctx) for v in values]
    return {"values": values, "dicts": dicts,
            "schemas": {ids[v]: json.dumps(s) for v, s in schemas.items()}}


def ours(batch: dict[str, Any]) -> tuple[Any, _decode.Decoded]:
    decoded = _decode.decode(bench.records_frame(batch["values"]), batch["schemas"])
    assert decoded.errors.height == 0
    return mi.flatten(decoded.records), decoded


def confluents(batch: dict[str, Any]) -> Any:
    """Confluent's dicts -> a frame (union values one field per branch) -> the same flatten."""
    frame = pl.from_dicts([bench.plain_unions(d) for d in batch["dicts"]],
                          infer_schema_length=None)
    ids = [int.from_bytes(v[1:5], "big") for v in batch["values"]]
    kafka = bench.records_frame(batch["values"]).drop("value").with_columns(
        schema_id=pl.Series(ids, dtype=pl.Int32))
    return mi.flatten(pl.concat([kafka, frame], how="horizontal"))


def test_every_version_is_present(batch: dict[str, Any]) -> None:
    ids = {int.from_bytes(v[1:5], "big") for v in batch["values"]}
    assert ids == set(batch["schemas"])
    v3 = json.loads(batch["schemas"][max(ids)])
    can = next(f for f in v3["fields"] if f["name"] == "CANMessages")["type"][1]["items"]
    assert next(f for f in can["fields"] if f["name"] == "ParsedValue")["type"] == [
        "null", "double", "string"]
    texts = sum(1 for d in batch["dicts"] for c in d.get("CANMessages") or []
                if isinstance(c.get("ParsedValue"), str))
    assert texts > 0


def test_frames_equal_confluents_cell_for_cell(batch: dict[str, Any], native: str) -> None:
    got, _ = ours(batch)
    want = confluents(batch)
    assert got.main.columns == want.main.columns
    cast = want.main.cast(got.main.schema)
    assert [c for c in got.main.columns if not got.main[c].equals(cast[c])] == []
    assert set(got.long) == set(want.long)
    for name, frame in got.long.items():
        assert frame.columns == want.long[name].columns, name
        assert frame.equals(want.long[name].cast(frame.schema)), name
    assert got.long["can_messages"].height > 30


def _ms(v: Any) -> int | None:
    if v is None:
        return None
    return int(v.timestamp() * 1000) if isinstance(v, datetime) else int(v)


def test_each_insight_reads_its_own_value_field(batch: dict[str, Any], native: str) -> None:
    """Independent of the flattening: main cells against the deserializer's named fields."""
    got, _ = ours(batch)
    rows = got.main.to_dicts()
    cat, checked = catalogue(), 0
    for row, d in zip(rows, batch["dicts"], strict=True):
        for name, v in d.items():
            info = cat.get(name)
            if v is None or info is None or info.is_hours or name == "Altitude":
                continue
            rec = v[1]  # (record name, record): return_record_name=True
            assert row[name] == rec[bench.value_field(name)], name
            assert _ms(row[f"{name}_datetime"]) == _ms(rec["datetime"]), name
            checked += 1
    assert checked > 1000


def test_both_time_encodings_give_one_utc_ms_column(batch: dict[str, Any], native: str) -> None:
    got, decoded = ours(batch)
    assert got.main.schema["EngineSpeed_datetime"] == pl.Datetime("ms", "UTC")
    assert got.main.schema["Location_datetime"] == pl.Datetime("ms", "UTC")
    # v1/v2 carry plain longs, v3 timestamp-millis: merged to the datetime, not to strings.
    fields = _decode.struct_fields(decoded.records.schema["EngineSpeed"])
    assert fields["datetime"] == pl.Datetime("ms", "UTC")
    first = got.main.filter(pl.col("EngineSpeed").is_not_null()).row(0, named=True)
    assert first["EngineSpeed_datetime"].tzinfo is not None
    assert first["EngineSpeed_datetime"] > datetime(2024, 1, 1, tzinfo=UTC)


def test_parsed_value_and_can_kinds(batch: dict[str, Any], native: str) -> None:
    can = ours(batch)[0].long["can_messages"]
    assert can.schema["ParsedValue"] == pl.Float64
    assert can.schema["ParsedStringValue"] == pl.String
    assert set(can["ParsedStringValue"].drop_nulls()) == {"on", "off"}
    assert can.filter(pl.col("ParsedStringValue").is_not_null())["ParsedValue"].null_count() == \
        can.filter(pl.col("ParsedStringValue").is_not_null()).height
    assert set(can["ValueKind"]) == {"VALUE", "MIN_MAX", "ACCUMULATED"}
    minmax = can.filter(pl.col("ValueKind") == "MIN_MAX")
    assert minmax["Value"].null_count() == minmax.height
    assert (minmax["MinValue"] <= minmax["MaxValue"]).all()


def test_units_are_not_kept_per_row_and_come_back_once(batch: dict[str, Any],
                                                       native: str) -> None:
    _, decoded = ours(batch)
    for name in ("EngineSpeed", "AcAverageFrequency"):  # the second's unit field is renamed
        fields = _decode.struct_fields(decoded.records.schema[name])
        assert set(fields) == {bench.value_field(name), "datetime"}
    assert bench.unit_field("AcAverageFrequency") == "UnitOfMeasure"
    units = mi.units(decoded.records, batch["schemas"].values(), raw_units=decoded.units)
    by = {r["insight"]: r for r in units.to_dicts()}
    cat = catalogue()
    seen = {n for d in batch["dicts"] for n, v in d.items() if v is not None and n in cat}
    renamed = [n for n in seen if bench.unit_field(n) != "unit" and not cat[n].is_hours]
    assert renamed
    for name in seen:
        if cat[name].is_hours:
            continue
        column = "Altitude_insight" if name == "Altitude" else name
        assert by[column]["unit"] == cat[name].unit
        assert by[column]["raw_unit"] == cat[name].unit  # what the generator streams
    assert by["RedStopLamp"]["unit"] is None


def test_chunks_of_different_versions_concat_like_one_decode(batch: dict[str, Any],
                                                             native: str) -> None:
    """The window pipeline decodes chunk by chunk: v1's plain longs and v3's timestamps, v2's
    ``["null","double"]`` and v3's three-branch ``ParsedValue`` meet in ``concat``."""
    frame = bench.records_frame(batch["values"])
    ids = sorted(batch["schemas"])
    parts = [_decode.decode(frame.filter(pl.col("value").bin.slice(1, 4) == i.to_bytes(4, "big")),
                            batch["schemas"]) for i in ids]
    whole = _decode.decode(frame, batch["schemas"])
    joined = _decode.concat(parts)
    assert joined.records.schema == whole.records.schema
    assert joined.records.sort("offset").equals(whole.records)
    assert dict(joined.units.iter_rows()) == dict(whole.units.iter_rows())
