"""_decode: framed Avro bytes -> records + errors, on in-memory bytes."""

from __future__ import annotations

import copy
import io
import json
import logging
import random
import struct
from datetime import UTC, date, datetime, time
from decimal import Decimal
from pathlib import Path
from typing import Any

import fastavro
import polars as pl
import pytest
from polars.testing import assert_frame_equal
from published import insight_layouts

from tu_analytics import _decode
from tu_analytics._decode import (
    CORRUPT,
    ERRORS_SCHEMA,
    decode,
    group,
    native,
    planning,
    schema_ids,
    split_header,
)
from tu_analytics.errors import SlowDecodeWarning

SCHEMAS = Path(_decode.__file__).parents[1] / "sandbox" / "schemas"
V1 = (SCHEMAS / "machine_insights_v1.avsc").read_text()
V2 = (SCHEMAS / "machine_insights_v2.avsc").read_text()
T0 = 1_717_200_000_000
# (value field, unit field) per insight: the published shape names them per insight.
LAYOUT = insight_layouts(json.loads(V2))
SPEED, SPEED_UNIT = LAYOUT["EngineSpeed"]
DPF, DPF_UNIT = LAYOUT["AfterTreatmentDieselParticulateFilterState"]
LAMP, LAMP_UNIT = LAYOUT["RedStopLamp"]


def frame(sid: int, schema: str | dict[str, Any], rec: Any) -> bytes:
    parsed = fastavro.parse_schema(json.loads(schema) if isinstance(schema, str) else schema)
    buf = io.BytesIO()
    buf.write(b"\x00" + struct.pack(">i", sid))
    fastavro.schemaless_writer(buf, parsed, rec)
    return buf.getvalue()


def records(values: list[bytes | None], keys: list[bytes | None] | None = None) -> pl.DataFrame:
    n = len(values)
    return pl.DataFrame({
        "partition": pl.Series([i % 3 for i in range(n)], dtype=pl.Int32),
        "offset": pl.Series(range(100, 100 + n), dtype=pl.Int64),
        "kafka_timestamp": pl.Series(range(T0, T0 + n), dtype=pl.Int64)
        .cast(pl.Datetime("ms", "UTC")),
        "key": pl.Series(keys if keys is not None else [f"k{i}".encode() for i in range(n)],
                         dtype=pl.Binary),
        "value": pl.Series(values, dtype=pl.Binary),
    })


def mi_record(rng: random.Random, i: int, v2: bool = False) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "Metadata": {"MachineId": f"M{rng.randrange(50)}", "UnitId": rng.randrange(10**6)},
        "EngineSpeed": {SPEED: rng.uniform(0, 2500), SPEED_UNIT: "rpm", "datetime": T0 + i},
        "CumulativeOperatingHours": {"Hour": rng.uniform(0, 9999), "datetime": T0 + i},
        "AfterTreatmentDieselParticulateFilterState": {
            DPF: rng.choice(["REGENERATION_NOT_NEEDED", "SAE_SPECIFIC_3"]), "datetime": T0},
        "AccessControlKeyUsage": [{"KeyId": "k", "Operation": rng.choice(["LOCK", "UNLOCK"]),
                                   "AccessType": "KEY_CARD", "datetime": T0}],
    }
    if rng.random() < 0.5:
        rec["FaultCodes"] = [{"CodeIdentifier": f"F{j}", "datetime": T0} for j in range(
            rng.randrange(3))]
    if v2:
        rec["RedStopLamp"] = {LAMP: rng.random() < 0.5, LAMP_UNIT: None, "datetime": T0 + i}
    return rec


def mi_values(n: int, seed: int = 1) -> list[bytes]:
    rng = random.Random(seed)
    return [frame(1, V1, mi_record(rng, i)) for i in range(n)]


def use_native(on: bool, monkeypatch: pytest.MonkeyPatch) -> None:
    """Decode with the compiled transcoder (``make native`` builds it) or without it."""
    monkeypatch.setenv("TU_NATIVE", "1" if on else "0")
    planning.native_module.cache_clear()
    planning.plan.cache_clear()
    if on:
        assert planning.native_module() is not None, "tu_analytics._native: run `make native`"


@pytest.fixture(params=["transcoder", "direct"])
def mode(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Both native paths: the Rust transcoder, and Polars' reader alone (no extension built)."""
    use_native(request.param == "transcoder", monkeypatch)
    yield request.param
    monkeypatch.undo()
    planning.native_module.cache_clear()
    planning.plan.cache_clear()


def without_units(rec: dict[str, Any]) -> dict[str, Any]:
    """A fastavro record as the decoder gives it: insight records without their unit field."""
    return {k: ({f: x for f, x in v.items() if k not in LAYOUT or f != LAYOUT[k][1]}
                if isinstance(v, dict) and "datetime" in v else v) for k, v in rec.items()}


def check_partition(inp: pl.DataFrame, out: _decode.Decoded) -> None:
    """Every input row is in exactly one output frame; records keep the input order."""
    got = out.records["offset"].to_list() + out.errors["offset"].to_list()
    assert sorted(got) == inp["offset"].to_list()
    positions = {o: i for i, o in enumerate(inp["offset"].to_list())}
    order = [positions[o] for o in out.records["offset"].to_list()]
    assert order == sorted(order)


# -- headers ----------------------------------------------------------------------------------


def test_split_header_and_schema_ids() -> None:
    values = pl.Series([b"\x00\x00\x00\x00\x07abc", b"\x07\x00\x00\x00\x01x", None, b"\x00\x00",
                        b"", b"\x00\x00\x00\x01\x00", b"\x00\xff\xff\xff\xff"], dtype=pl.Binary)
    head = split_header(values)
    assert head.schema == pl.Schema({"magic": pl.UInt8, "schema_id": pl.Int32, "size": pl.Int64})
    assert head["magic"].to_list() == [0, 7, None, 0, None, 0, 0]
    assert head["schema_id"].to_list() == [7, None, None, None, None, 256, -1]
    assert head["size"].to_list() == [8, 6, None, 2, 0, 5, 5]
    assert schema_ids(values) == [-1, 7, 256]


def test_empty_input() -> None:
    out = decode(records([]), {1: V1})
    assert out.records.height == 0
    assert out.records.columns[:5] == ["partition", "offset", "kafka_timestamp", "schema_id", "key"]
    assert out.errors.schema == ERRORS_SCHEMA


def test_errors_frame_columns_exactly() -> None:
    out = decode(records([b"\x07abcdef"]), {})
    assert list(out.errors.schema.items()) == list(ERRORS_SCHEMA.items())
    assert list(ERRORS_SCHEMA) == ["partition", "offset", "kafka_timestamp", "schema_id",
                                   "reason", "key", "value"]


# -- the fast path ----------------------------------------------------------------------------


def test_mixed_schema_ids_interleaved_keep_input_order() -> None:
    rng = random.Random(3)
    values, ids = [], []
    for i in range(300):
        v2 = rng.random() < 0.5
        values.append(frame(2 if v2 else 1, V2 if v2 else V1, mi_record(rng, i, v2)))
        ids.append(2 if v2 else 1)
    inp = records(values).sample(fraction=1.0, shuffle=True, seed=5)  # offsets out of order
    out = decode(inp, {1: V1, 2: V2})
    assert out.errors.height == 0
    assert out.records["offset"].to_list() == inp["offset"].to_list()
    by_offset = dict(zip(records(values)["offset"], ids, strict=True))
    assert out.records["schema_id"].to_list() == [by_offset[o] for o in inp["offset"]]
    lamp = out.records.select(pl.col("RedStopLamp").struct.field(LAMP), "schema_id")
    assert lamp.filter(pl.col("schema_id") == 1)[LAMP].null_count() == lamp.filter(
        pl.col("schema_id") == 1).height
    assert lamp.filter(pl.col("schema_id") == 2)[LAMP].null_count() == 0
    assert out.records["key"].to_list() == inp["key"].to_list()


def test_values_match_fastavro(mode: str) -> None:
    values = mi_values(200)
    out = decode(records(values), {1: V1})
    parsed = fastavro.parse_schema(json.loads(V1))
    for row, value in zip(out.records.iter_rows(named=True), values, strict=True):
        want = without_units(fastavro.schemaless_reader(io.BytesIO(value[5:]), parsed, None))
        assert {k: row[k] for k in want} == want


def test_unit_strings_are_kept_once_not_per_row(mode: str) -> None:
    out = decode(records(mi_values(50)), {1: V1})
    # v1 publishes times as plain epoch-ms longs: the decoder keeps the writer's type.
    assert _decode.struct_fields(out.records.schema["EngineSpeed"]) == {
        SPEED: pl.Float64(), "datetime": pl.Int64()}
    assert dict(out.units.iter_rows()) == {"EngineSpeed": "rpm"}


def test_nulls_and_empty_lists_stay_distinct() -> None:
    rng = random.Random(0)
    recs = [mi_record(rng, i) for i in range(3)]
    recs[0]["FaultCodes"], recs[1]["FaultCodes"] = None, []
    recs[2]["FaultCodes"] = [{"CodeIdentifier": "x"}]
    out = decode(records([frame(1, V1, r) for r in recs]), {1: V1})
    faults = out.records["FaultCodes"].to_list()
    assert faults[0] is None
    assert faults[1] == []
    assert faults[2][0]["CodeIdentifier"] == "x"


def test_enums_come_back_as_strings() -> None:
    out = decode(records(mi_values(20)), {1: V1})
    state = out.records.schema["AfterTreatmentDieselParticulateFilterState"]
    assert isinstance(state, pl.Struct)
    assert {f.name: f.dtype for f in state.fields}[DPF] == pl.String  # published as a string
    keys = out.records.schema["AccessControlKeyUsage"]  # Avro enums: Operation, AccessType
    assert keys == pl.List(pl.Struct({
        "OperatorId": pl.String, "KeyId": pl.String, "Operation": pl.String,
        "AccessType": pl.String, "Success": pl.Boolean, "datetime": pl.Int64}))
    ops = out.records["AccessControlKeyUsage"].explode().struct.field("Operation")
    assert set(ops) <= {"LOCK", "UNLOCK"}
    assert ops.null_count() == 0


def test_parallel_chunks_give_the_same_frame(monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    inp = records(mi_values(400))
    whole = decode(inp, {1: V1})
    monkeypatch.setattr(group, "CHUNK", 37)
    assert_frame_equal(decode(inp, {1: V1}).records, whole.records)


# -- bad records ------------------------------------------------------------------------------


def _corrupt_enum(rec: dict[str, Any]) -> bytes:
    """A body whose enum index is past the writer schema's last symbol."""
    schema = json.loads(V1)
    for f in schema["fields"]:
        if f["name"] == "AccessControlKeyUsage":
            item = f["type"][1]["items"]
            enum = next(g for g in item["fields"] if g["name"] == "Operation")["type"][1]
            enum["symbols"] = [*enum["symbols"], "BOGUS"]
    rec = copy.deepcopy(rec)
    rec["AccessControlKeyUsage"][0]["Operation"] = "BOGUS"
    return frame(1, schema, rec)


def test_every_bad_record_kind_is_caught_and_neighbours_decode(mode: str) -> None:
    rng = random.Random(11)
    good = mi_values(120, seed=2)
    values: list[bytes | None] = list(good)
    body = good[40]
    bad = {
        5: (None, "null value"),
        6: (b"", "value shorter than 5 bytes (0 bytes)"),
        7: (b"\x00\x00\x01", "value shorter than 5 bytes (3 bytes)"),
        8: (b"\x07" + body[1:], "bad magic byte 0x07"),
        9: (b"\x00\x00\x00\x03\xe7" + body[5:], "unknown schema id 999 (registry: not found)"),
        10: (b"\x00\x00\x00\x00\x05" + body[5:], "unknown schema id 5 (no schema given)"),
        50: (body[: len(body) // 2], CORRUPT),  # truncated, mid-group
        51: (body[:5] + rng.randbytes(300), CORRUPT),  # garbage
        60: (body + b"\x02\x04", CORRUPT),  # valid prefix + extra bytes, mid-group
        70: (_corrupt_enum(mi_record(random.Random(1), 0)), CORRUPT),
        119: (body + b"\x00", CORRUPT),  # extra bytes on the group's last record
    }
    for i, (v, _) in bad.items():
        values[i] = v
    inp = records(values)
    out = decode(inp, {1: V1, 999: None})
    check_partition(inp, out)
    reasons = dict(zip(out.errors["offset"], out.errors["reason"], strict=True))
    assert reasons == {100 + i: why for i, (_, why) in bad.items()}
    err = out.errors.filter(pl.col("offset") == 109)
    assert err["schema_id"].item() == 999
    assert err["value"].item() == values[9]
    assert out.errors.filter(pl.col("offset") == 108)["schema_id"].item() is None
    clean = decode(records(list(good)), {1: V1}).records
    keep = clean.filter(~pl.col("offset").is_in([100 + i for i in bad]))
    assert_frame_equal(out.records, keep)


@pytest.mark.parametrize("seed", range(8))
def test_random_corruption_never_loses_or_invents_rows(seed: int, mode: str) -> None:
    rng = random.Random(seed)
    good = mi_values(300, seed=seed)
    values = list(good)
    broken: set[int] = set()
    for _ in range(rng.choice([1, 3, 20])):
        i = rng.randrange(len(values))
        body = good[i]
        kind = rng.choice(["garbage", "truncate", "extra"])
        if kind == "garbage":
            values[i] = body[:5] + rng.randbytes(rng.randrange(1, 400))
        elif kind == "truncate":
            values[i] = body[: rng.randrange(5, len(body))]
        else:
            values[i] = body + rng.randbytes(rng.randrange(1, 30))
        broken.add(100 + i)
    inp = records(values)
    out = decode(inp, {1: V1})
    check_partition(inp, out)
    assert set(out.errors["offset"]) <= broken
    # Random bytes can by chance be a valid body; then it must decode like fastavro says.
    parsed = fastavro.parse_schema(json.loads(V1))
    for row in out.records.filter(pl.col("offset").is_in(list(broken))).iter_rows(named=True):
        v = values[row["offset"] - 100]
        buf = io.BytesIO(v[5:])
        fastavro.schemaless_reader(buf, parsed, None)
        assert buf.tell() == len(v) - 5
    clean = decode(records(good), {1: V1}).records
    assert_frame_equal(out.records.filter(~pl.col("offset").is_in(list(broken))),
                       clean.filter(~pl.col("offset").is_in(list(broken))))


def test_corrupt_records_across_chunks(monkeypatch: pytest.MonkeyPatch, mode: str) -> None:
    monkeypatch.setattr(group, "CHUNK", 50)
    monkeypatch.setattr(group, "SMALL", 4)
    good = mi_values(400)
    values = list(good)
    for i in (0, 49, 50, 51, 199, 399):
        values[i] = good[i][:-3]
    out = decode(records(values), {1: V1})
    assert sorted(out.errors["offset"]) == [100 + i for i in (0, 49, 50, 51, 199, 399)]
    assert out.records.height == 394


def test_unusable_writer_schema_goes_to_errors() -> None:
    recursive = json.dumps({"type": "record", "name": "Node", "fields": [
        {"name": "next", "type": ["null", "Node"]}]})
    out = decode(records([b"\x00\x00\x00\x00\x01\x00", b"\x00\x00\x00\x00\x02\x00"]),
                 {1: recursive, 2: "not json"})
    assert out.records.height == 0
    assert out.errors["reason"].str.starts_with("unusable writer schema").all()


def test_native_errors_never_swallow_keyboard_interrupt() -> None:
    assert not any(issubclass(KeyboardInterrupt, e) for e in native.NATIVE_ERRORS)
    assert not any(issubclass(SystemExit, e) for e in native.NATIVE_ERRORS)


# -- types: native dtypes == the mapping, values == fastavro ------------------------------------

WIDE = {
    "type": "record", "name": "Wide", "namespace": "x.y", "fields": [
        {"name": "i", "type": "int"}, {"name": "l", "type": ["null", "long"]},
        {"name": "f", "type": "float"}, {"name": "d", "type": ["double", "null"]},
        {"name": "s", "type": ["string"]}, {"name": "b", "type": "bytes"},
        {"name": "flag", "type": ["null", "boolean"]},
        {"name": "e", "type": {"type": "enum", "name": "E", "symbols": ["A", "B", "C"]}},
        {"name": "en", "type": ["null", "E"]},
        {"name": "fx", "type": {"type": "fixed", "name": "F4", "size": 4}},
        {"name": "day", "type": {"type": "int", "logicalType": "date"}},
        {"name": "tod", "type": {"type": "int", "logicalType": "time-millis"}},
        {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
        {"name": "tsu", "type": ["null", {"type": "long", "logicalType": "timestamp-micros"}]},
        {"name": "id", "type": {"type": "string", "logicalType": "uuid"}},
        {"name": "dec", "type": {"type": "bytes", "logicalType": "decimal", "precision": 9,
                                 "scale": 2}},
        {"name": "m", "type": {"type": "map", "values": ["null", "E"]}},
        {"name": "nested", "type": {"type": "array", "items": {"type": "array", "items": "E"}}},
        {"name": "r", "type": ["null", {"type": "record", "name": "Inner", "fields": [
            {"name": "x", "type": "long"}, {"name": "k", "type": ["null", "x.y.E"]}]}]},
        {"name": "rs", "type": {"type": "array", "items": "Inner"}},
    ]}


def wide_record(i: int) -> dict[str, Any]:
    return {
        "i": i, "l": None if i % 2 else i * 10, "f": 1.5, "d": None if i % 3 else 2.25,
        "s": f"s{i}", "b": bytes([i]), "flag": [None, True, False][i % 3],
        "e": "ABC"[i % 3], "en": None if i % 2 else "C", "fx": b"abcd",
        "day": date(2024, 1, 1 + i), "tod": time(1, 2, 3), "ts": T0 + i, "tsu": None,
        "id": f"12345678-1234-5678-1234-56781234567{i % 10}", "dec": Decimal("12.34"),
        "m": {"a": "A", "b": None} if i % 2 else {}, "nested": [["A"], [], ["B", "C"]],
        "r": None if i % 2 else {"x": i, "k": "B"}, "rs": [{"x": 1, "k": None}],
    }


def test_native_dtypes_follow_the_mapping_and_values_match(mode: str) -> None:
    text = json.dumps(WIDE)
    out = decode(records([frame(1, WIDE, wide_record(i)) for i in range(6)]), {1: text})
    assert out.errors.height == 0
    want = _decode.avro_to_polars(text)
    assert {c: out.records.schema[c] for c in want} == dict(want)
    assert want["e"] == pl.String
    assert want["en"] == pl.String
    assert want["m"] == pl.List(pl.Struct({"key": pl.String, "value": pl.String}))
    assert want["ts"] == pl.Datetime("ms", "UTC")
    assert want["tsu"] == pl.Datetime("us", "UTC")
    assert want["dec"] == pl.Decimal(9, 2)
    row = out.records.row(1, named=True)
    assert row["m"] == [{"key": "a", "value": "A"}, {"key": "b", "value": None}]
    assert row["nested"] == [["A"], [], ["B", "C"]]
    assert row["ts"] == datetime.fromtimestamp((T0 + 1) / 1000, UTC)
    assert row["day"] == date(2024, 1, 2)
    assert row["tod"] == time(1, 2, 3)
    assert row["id"] == "12345678-1234-5678-1234-567812345671"
    assert row["dec"] == Decimal("12.34")
    assert (row["e"], row["en"], row["r"]) == ("B", None, None)
    assert out.records.row(0, named=True)["r"] == {"x": 0, "k": "B"}


# -- the slow path ----------------------------------------------------------------------------

MULTI = {"type": "record", "name": "Can", "fields": [
    {"name": "id", "type": "long"},
    {"name": "ParsedValue", "type": ["null", "double", "string"], "default": None},
    {"name": "kind", "type": ["null", {"type": "enum", "name": "K", "symbols": ["V", "W"]}]},
    {"name": "items", "type": {"type": "array", "items": ["null", "long", "string"]}},
    {"name": "ts", "type": {"type": "long", "logicalType": "timestamp-millis"}},
    {"name": "choice", "type": ["null", "K", {"type": "map", "values": "long"},
        {"type": "record", "name": "Sub", "fields": [{"name": "a", "type": "int"}]},
        {"type": "long", "logicalType": "timestamp-millis"}, "boolean"], "default": None},
]}


def test_multi_branch_unions_decode_on_both_paths(caplog: pytest.LogCaptureFixture,
                                                 mode: str) -> None:
    text = json.dumps(MULTI)
    when = datetime.fromtimestamp(T0 / 1000, UTC)
    recs = [{"id": 1, "ParsedValue": 2.5, "kind": "V", "items": [1, "a", None], "ts": T0,
             "choice": "W"},
            {"id": 2, "ParsedValue": "high", "kind": None, "items": [], "ts": T0 + 1,
             "choice": ("Sub", {"a": 5})},  # fastavro's way to name the branch
            {"id": 3, "ParsedValue": None, "kind": "W", "items": [7], "ts": T0 + 2,
             "choice": {"x": 1}},
            {"id": 4, "ParsedValue": 1.0, "kind": None, "items": [], "ts": T0, "choice": when},
            {"id": 5, "ParsedValue": 1.0, "kind": None, "items": [], "ts": T0, "choice": False}]
    values: list[bytes | None] = [frame(4, MULTI, r) for r in recs]
    values.insert(1, values[0][:-2])  # a truncated one among them
    with caplog.at_level(logging.WARNING, logger="tu_analytics._decode"):
        out = decode(records(values), {4: text})
    # Natively with the transcoder; without it fastavro, and the log says why.
    logged = [r.getMessage() for r in caplog.records]
    if mode == "transcoder":
        assert logged == []
    else:
        assert len(logged) == 1
        assert "a union of several non-null types" in logged[0]
    assert out.errors["reason"].to_list() == [CORRUPT]
    assert out.records.schema["ParsedValue"] == pl.Struct({"double": pl.Float64,
                                                           "string": pl.String})
    assert out.records["ParsedValue"].to_list()[:3] == [
        {"double": 2.5, "string": None}, {"double": None, "string": "high"}, None]
    assert out.records["items"].to_list()[:3] == [
        [{"long": 1, "string": None}, {"long": None, "string": "a"}, None], [],
        [{"long": 7, "string": None}]]
    assert out.records["kind"].to_list()[:3] == ["V", None, "W"]
    assert out.records.schema["ts"] == pl.Datetime("ms", "UTC")
    assert out.records["offset"].to_list() == [100, 102, 103, 104, 105]
    choice = out.records.schema["choice"]
    assert isinstance(choice, pl.Struct)
    assert [f.name for f in choice.fields] == ["K", "map", "Sub", "long", "boolean"]
    picked = [{k: v for k, v in c.items() if v is not None} for c in out.records["choice"]]
    assert picked == [{"K": "W"}, {"Sub": {"a": 5}}, {"map": [{"key": "x", "value": 1}]},
                      {"long": when}, {"boolean": False}]


def test_schema_versions_with_different_nested_shapes_merge_by_name(mode: str) -> None:
    old = {"type": "record", "name": "R", "fields": [
        {"name": "loc", "type": ["null", {"type": "record", "name": "L", "fields": [
            {"name": "lat", "type": "double"}]}]}]}
    new = copy.deepcopy(old)
    new["fields"][0]["type"][1]["fields"].insert(0, {"name": "alt", "type": ["null", "int"]})
    new["fields"].append({"name": "extra", "type": ["null", "string"], "default": None})
    values = [frame(1, old, {"loc": {"lat": 1.0}}), frame(2, new, {"loc": {"alt": 5, "lat": 2.0},
                                                                    "extra": "x"}),
              frame(1, old, {"loc": None})]
    out = decode(records(values), {1: json.dumps(old), 2: json.dumps(new)})
    assert out.records["loc"].to_list() == [{"lat": 1.0, "alt": None}, {"lat": 2.0, "alt": 5},
                                            None]
    assert out.records["extra"].to_list() == [None, "x", None]


NULL_FIELD = {"type": "record", "name": "N", "fields": [
    {"name": "id", "type": "long"}, {"name": "nothing", "type": "null"},
    {"name": "v", "type": ["null", "double", "string"]}]}


def test_a_construct_no_native_reader_takes_falls_back_with_one_warning(mode: str) -> None:
    recs = [{"id": i, "nothing": None, "v": [1.5, "x", None][i % 3]} for i in range(7)]
    values: list[bytes | None] = [frame(3, NULL_FIELD, r) for r in recs]
    values.append(values[0] + b"\x01")  # trailing bytes: still caught on the slow path
    with pytest.warns(SlowDecodeWarning, match="because of a null-typed field") as caught:
        out = decode(records(values), {3: json.dumps(NULL_FIELD)})
    assert len(caught) == 1
    assert out.errors["offset"].to_list() == [107]
    assert out.records["id"].to_list() == list(range(7))
    assert out.records["nothing"].dtype == pl.Null
    assert out.records["v"].to_list()[:3] == [{"double": 1.5, "string": None},
                                              {"double": None, "string": "x"}, None]


def test_the_transcoder_names_every_bad_record_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    """With the transcoder no bisection is needed: it validates each record completely."""
    use_native(True, monkeypatch)
    calls: list[int] = []
    real = native.read_container

    def counting(*args: Any) -> Any:
        calls.append(args[2])
        return real(*args)

    monkeypatch.setattr(native, "read_container", counting)
    good = mi_values(300)
    values = list(good)
    for i in (3, 150, 299):
        values[i] = good[i][:-1]
    out = decode(records(values), {1: V1})
    assert sorted(out.errors["offset"]) == [103, 250, 399]
    assert sum(calls) == 297  # each good record read once, the bad ones never
    planning.plan.cache_clear()
