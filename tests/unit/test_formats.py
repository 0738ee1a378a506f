"""formats: decoded records -> the frames of docs/frames.md, checked cell by cell against what
Confluent's AvroDeserializer yields for the same bytes."""

from __future__ import annotations

import io
import json
import random
import struct
from datetime import datetime
from pathlib import Path
from typing import Any

import fastavro
import polars as pl
import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext
from published import TIME_FIELDS, insight_layouts, utc_ms

from tu_analytics import _decode
from tu_analytics.formats import Frames, detect_format, machine_insights, raw
from tu_analytics.formats._catalogue import catalogue

SCHEMAS = Path(_decode.__file__).parents[1] / "sandbox" / "schemas"
V1 = (SCHEMAS / "machine_insights_v1.avsc").read_text()
V2 = (SCHEMAS / "machine_insights_v2.avsc").read_text()
RAW = (SCHEMAS / "raw_v1.avsc").read_text()
T0 = 1_717_200_000_000
KAFKA = ["partition", "offset", "kafka_timestamp", "schema_id"]
LAMPS = ["AmberWarningLamp", "MalfunctionIndicatorLamp", "ProtectLamp", "RedStopLamp"]
# (value field, unit field) per insight, by the published rule; v2 adds to v1's.
LAYOUT = {**insight_layouts(json.loads(V1)), **insight_layouts(json.loads(V2))}


def frame(sid: int, schema: str, rec: dict[str, Any]) -> bytes:
    buf = io.BytesIO()
    buf.write(b"\x00" + struct.pack(">i", sid))
    fastavro.schemaless_writer(buf, fastavro.parse_schema(json.loads(schema)), rec)
    return buf.getvalue()


def records(values: list[bytes]) -> pl.DataFrame:
    n = len(values)
    return pl.DataFrame({
        "partition": pl.Series([i % 2 for i in range(n)], dtype=pl.Int32),
        "offset": pl.Series(range(n), dtype=pl.Int64),
        "kafka_timestamp": pl.Series(range(T0, T0 + n), dtype=pl.Int64)
        .cast(pl.Datetime("ms", "UTC")),
        "key": pl.Series([None] * n, dtype=pl.Binary),
        "value": pl.Series(values, dtype=pl.Binary),
    })


def decoded(values: list[bytes], schemas: dict[int, str | None]) -> pl.DataFrame:
    out = _decode.decode(records(values), schemas)
    assert out.errors.height == 0
    return out.records


# -- realistic random Machine Insights records ---------------------------------------------


def _maybe(rng: random.Random, p: float, value: Any) -> Any:
    return value if rng.random() < p else None


def _value(rng: random.Random, name: str) -> Any:
    info = catalogue().get(name)
    if info is None or info.value_type == "boolean":
        return rng.random() < 0.5
    if info.value_type == "count":
        return rng.randrange(-5, 10**9)
    if info.value_type == "enum":
        return rng.choice(info.enum_values)
    return rng.choice([rng.uniform(-1e4, 1e4), 0.0, -0.0, 1e300])


def random_record(rng: random.Random, schema: dict[str, Any], i: int) -> dict[str, Any]:
    names = [f["name"] for f in schema["fields"]]
    insights = [n for n in names if n in catalogue() or n in LAMPS]
    t = T0 + i * 997
    rec: dict[str, Any] = {
        "Metadata": _maybe(rng, 0.95, {
            "MachineId": f"M{rng.randrange(20)}", "UnitId": _maybe(rng, 0.9, rng.randrange(10**7)),
            "TelematicSerialNumber": _maybe(rng, 0.8, "T1"),
            "ExternalReferenceNumber": _maybe(rng, 0.3, "ext")}),
        "EquipmentHeader": _maybe(rng, 0.7, {
            "UnitInstallDateTime": _maybe(rng, 0.5, t - 10**10), "OEMName": "Volvo",
            "Model": _maybe(rng, 0.5, "EC220"), "EquipmentID": "E-1", "SerialNumber": None,
            "PIN": _maybe(rng, 0.2, "PIN1")}),
        "Location": _maybe(rng, 0.7, {"Latitude": rng.uniform(-90, 90),
                                      "Longitude": rng.uniform(-180, 180),
                                      "Altitude": _maybe(rng, 0.5, 12.5),
                                      "AltitudeUnits": _maybe(rng, 0.5, "metres"),
                                      "datetime": t}),
        "LocationMetadata": _maybe(rng, 0.4, {"AccuracyRadius": 3.5,
                                              "HighAccuracy": _maybe(rng, 0.8, True)}),
        "LocationAddress": _maybe(rng, 0.2, {"Country": "DK", "Zipcode": None, "City": "Vejle",
                                             "Address": "Vej 1", "GeoHash": "u1", "datetime": t}),
    }
    for name in rng.sample(insights, rng.randint(5, 15)):
        if name.startswith("Cumulative") and name.endswith("Hours"):
            rec[name] = {"Hour": _maybe(rng, 0.95, rng.uniform(0, 1e5)),
                         "datetime": _maybe(rng, 0.95, t)}
        else:
            value, unit = LAYOUT[name]
            rec[name] = {value: _maybe(rng, 0.95, _value(rng, name)),
                         "datetime": _maybe(rng, 0.95, t)}
            if unit is not None:
                rec[name][unit] = _maybe(rng, 0.5, "unit-x")
    if rng.random() < 0.4:
        rec["FaultCodes"] = [{
            "CodeIdentifier": f"SPN{rng.randrange(99)}", "CodeDescription": _maybe(rng, 0.5, "d"),
            "CodeSeverity": rng.choice(["LOW", None]), "CodeSource": "J1939", "datetime": t,
            "datetimeCleared": _maybe(rng, 0.3, t + 5)} for _ in range(rng.randrange(4))]
    if rng.random() < 0.2:
        rec["CANMessages"] = [{
            "datetime": t, "UnitOfMeasurement": "bar", "VariableId": rng.randrange(100),
            "VariableName": "p", "ParsedValue": _maybe(rng, 0.5, 1.25),
            "ParsedStringValue": _maybe(rng, 0.3, "on"),
            "CanMessageValues": _maybe(rng, 0.7, _can_values(rng)),
            "CanMessageData": _maybe(rng, 0.7, {"CanId": 123, "SourceAddress": 7,
                                                "BinaryValue": rng.randbytes(4), "Counter": 9,
                                                "CapturingPeriod": None, "CanType": "J1939"}),
        } for _ in range(rng.randrange(3))]
    if rng.random() < 0.15:
        rec["AdvancedSensors"] = [{"datetime": t, "SensorId": 4, "SensorName": "s",
                                   "NumericValue": _maybe(rng, 0.5, 4.5),
                                   "StringValue": _maybe(rng, 0.5, "x"),
                                   "Source": rng.choice(["MODBUS", "CAN2", None])}]
    if rng.random() < 0.1:
        rec["AccessControlKeyUsage"] = [{"OperatorId": "op", "KeyId": "k", "Operation": "LOCK",
                                         "AccessType": rng.choice(["KEY_CARD", None]),
                                         "Success": True, "datetime": t}]
    if rng.random() < 0.1:
        rec["FaultCodes"] = None if rng.random() < 0.5 else []
    return rec


def _can_values(rng: random.Random) -> tuple[str, dict[str, Any]]:
    """A branch of the published ``CanMessageValues`` union, chosen by its full name
    (``CanMessageValue`` and ``CanMessageAccumulated`` have the same fields)."""
    branch = rng.choice(list(BRANCH_KIND))
    body = ({"MinValue": _maybe(rng, 0.5, 1.0), "MaxValue": 3.0} if branch == "CanMessageMinMax"
            else {"value": _maybe(rng, 0.8, 2.0)})
    return f"com.trackunit.streaming.{branch}", body


# -- the oracle: Confluent's deserializer, flattened by hand --------------------------------

# docs/frames.md: the CanMessageValues branch -> ValueKind.
BRANCH_KIND = {"CanMessageValue": "VALUE", "CanMessageMinMax": "MIN_MAX",
               "CanMessageAccumulated": "ACCUMULATED"}
BRANCH = "(branch)"  # a path step: the name of the union branch read so far


def _sub(d: dict[str, Any] | None, *path: str) -> Any:
    """The value at ``path`` (a union's record arrives as ``(full name, record)``:
    ``return_record_name``); a published time (epoch ms) as the UTC datetime."""
    for p in path:
        if isinstance(d, tuple):
            if p == BRANCH:
                return BRANCH_KIND[d[0].rpartition(".")[2]]
            d = d[1]
        if d is None:
            return None
        d = d.get(p)
    if isinstance(d, tuple):
        d = d[1]
    return utc_ms(d) if path and path[-1] in TIME_FIELDS else d


IDENTITY = {
    "MachineId": ("Metadata", "MachineId"), "UnitId": ("Metadata", "UnitId"),
    "TelematicSerialNumber": ("Metadata", "TelematicSerialNumber"),
    "ExternalReferenceNumber": ("Metadata", "ExternalReferenceNumber"),
    "OEMName": ("EquipmentHeader", "OEMName"), "Model": ("EquipmentHeader", "Model"),
    "EquipmentID": ("EquipmentHeader", "EquipmentID"),
    "SerialNumber": ("EquipmentHeader", "SerialNumber"), "PIN": ("EquipmentHeader", "PIN"),
    "UnitInstallDateTime": ("EquipmentHeader", "UnitInstallDateTime"),
    "Latitude": ("Location", "Latitude"), "Longitude": ("Location", "Longitude"),
    "Altitude": ("Location", "Altitude"), "AltitudeUnits": ("Location", "AltitudeUnits"),
    "Location_datetime": ("Location", "datetime"),
    "AccuracyRadius": ("LocationMetadata", "AccuracyRadius"),
    "HighAccuracy": ("LocationMetadata", "HighAccuracy"),
    "Country": ("LocationAddress", "Country"), "Zipcode": ("LocationAddress", "Zipcode"),
    "City": ("LocationAddress", "City"), "Address": ("LocationAddress", "Address"),
    "GeoHash": ("LocationAddress", "GeoHash"),
    "LocationAddress_datetime": ("LocationAddress", "datetime"),
}


def expected_main_row(meta: dict[str, Any], d: dict[str, Any],
                      columns: list[str]) -> dict[str, Any]:
    row = dict(meta)
    row.update({c: _sub(d, *path) for c, path in IDENTITY.items()})
    for col in columns[len(row):]:
        name = col.removesuffix("_datetime")
        field = name.removesuffix("_insight")
        leaf = "datetime" if col.endswith("_datetime") else LAYOUT[field][0]
        row[col] = _sub(d, field, leaf)
    return row


def expected_long_rows(meta: dict[str, Any], d: dict[str, Any], column: str,
                       paths: dict[str, tuple[str, ...]]) -> list[dict[str, Any]]:
    mid = {"MachineId": _sub(d, "Metadata", "MachineId")}
    return [{**meta, **mid, **{c: _sub(el, *p) for c, p in paths.items()}}
            for el in d.get(column) or []]


LONG_PATHS = {
    ("fault_codes", "FaultCodes"): {c: (c,) for c in [
        "CodeIdentifier", "CodeDescription", "CodeSeverity", "CodeSource", "datetime",
        "datetimeCleared"]},
    ("can_messages", "CANMessages"): {
        **{c: (c,) for c in ["datetime", "UnitOfMeasurement", "VariableId", "VariableName",
                             "ParsedValue", "ParsedStringValue"]},
        "ValueKind": ("CanMessageValues", BRANCH), "Value": ("CanMessageValues", "value"),
        "MinValue": ("CanMessageValues", "MinValue"), "MaxValue": ("CanMessageValues", "MaxValue"),
        **{c: ("CanMessageData", c) for c in ["CanId", "SourceAddress", "BinaryValue", "Counter",
                                              "CapturingPeriod", "CanType"]}},
    ("advanced_sensors", "AdvancedSensors"): {c: (c,) for c in [
        "datetime", "UnitOfMeasurement", "SensorId", "SensorName", "NumericValue", "StringValue",
        "Source"]},
    ("access_key_usage", "AccessControlKeyUsage"): {c: (c,) for c in [
        "OperatorId", "KeyId", "Operation", "AccessType", "Success", "datetime"]},
}


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b and str(a) == str(b)  # -0.0 stays -0.0
    if isinstance(a, datetime) and isinstance(b, datetime):
        return a == b and a.utcoffset() == b.utcoffset()
    return bool(a == b) and type(a) is type(b)


def assert_rows_equal(got: list[dict[str, Any]], want: list[dict[str, Any]]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        assert list(g) == list(w)
        bad = {k: (g[k], w[k]) for k in g if not _same(g[k], w[k])}
        assert not bad, bad


@pytest.fixture(scope="module")
def mixed_batch() -> tuple[list[bytes], list[dict[str, Any]], pl.DataFrame]:
    """~400 random v1/v2 records, framed with the mock registry's ids, and Confluent's dicts."""
    client = SchemaRegistryClient.new_client({"url": "mock://formats-test"})
    ids = {v: client.register_schema(f"mi-{v}-value", Schema(text, "AVRO"))
           for v, text in (("v1", V1), ("v2", V2))}
    schemas = {"v1": json.loads(V1), "v2": json.loads(V2)}
    rng = random.Random(2024)
    values = []
    for i in range(400):
        v = rng.choice(["v1", "v2"])
        values.append(frame(ids[v], json.dumps(schemas[v]), random_record(rng, schemas[v], i)))
    deserializer = AvroDeserializer(client, return_record_name=True)
    ctx = SerializationContext("machine-insights", MessageField.VALUE)
    dicts = [deserializer(v, ctx) for v in values]
    return values, dicts, decoded(values, {ids["v1"]: V1, ids["v2"]: V2})


def test_flatten_equals_confluents_deserializer_cell_by_cell(
    mixed_batch: tuple[list[bytes], list[dict[str, Any]], pl.DataFrame],
) -> None:
    _, dicts, recs = mixed_batch
    frames = machine_insights.flatten(recs)
    metas = recs.select(KAFKA).to_dicts()
    want_main = [expected_main_row(m, d, frames.main.columns)
                 for m, d in zip(metas, dicts, strict=True)]
    assert_rows_equal(frames.main.to_dicts(), want_main)
    for (name, column), paths in LONG_PATHS.items():
        want = [r for m, d in zip(metas, dicts, strict=True)
                for r in expected_long_rows(m, d, column, paths)]
        assert frames.long[name].columns == [*KAFKA, "MachineId", *paths]
        assert_rows_equal(frames.long[name].to_dicts(), want)
        assert want, f"the sample should exercise {name}"


def test_main_columns_follow_the_contract(
    mixed_batch: tuple[list[bytes], list[dict[str, Any]], pl.DataFrame],
) -> None:
    main = machine_insights.flatten(mixed_batch[2]).main
    schema = main.schema
    assert main.columns[:4] == KAFKA
    assert main.columns[4:4 + len(IDENTITY)] == list(IDENTITY)
    assert schema["UnitId"] == pl.Int64
    assert schema["HighAccuracy"] == pl.Boolean
    assert schema["UnitInstallDateTime"] == pl.Datetime("ms", "UTC")
    for insight in catalogue().values():
        name = "Altitude_insight" if insight.name == "Altitude" else insight.name
        want = {"double": pl.Float64, "boolean": pl.Boolean, "count": pl.Int64,
                "enum": pl.String}[insight.value_type]
        assert schema[name] == want, name
        assert schema[f"{name}_datetime"] == pl.Datetime("ms", "UTC")
    for lamp in LAMPS:
        assert schema[lamp] == pl.Boolean
    v1_rows = main.filter(pl.col("schema_id") == main["schema_id"].min())
    assert v1_rows.height
    assert v1_rows.select(LAMPS).null_count().row(0) == (v1_rows.height,) * 4
    assert main.columns.count("Altitude") == 1
    assert len(set(main.columns)) == main.width


def test_v1_only_batch_still_has_catalogue_columns_and_same_shape_as_empty_frames() -> None:
    rng = random.Random(5)
    schema = json.loads(V1)
    recs = decoded([frame(1, V1, random_record(rng, schema, i)) for i in range(30)], {1: V1})
    frames = machine_insights.flatten(recs)
    empty = machine_insights.empty_frames([V1])
    assert empty.main.height == 0
    assert empty.main.schema == frames.main.schema
    assert {k: v.schema for k, v in empty.long.items()} == {
        k: v.schema for k, v in frames.long.items()}
    assert not any(c in frames.main.columns for c in LAMPS)
    v2 = machine_insights.empty_frames([V1, V2])
    assert all(c in v2.main.columns for c in LAMPS)


def test_empty_frames_without_schemas_has_the_catalogue() -> None:
    frames = machine_insights.empty_frames([])
    assert isinstance(frames, Frames)
    assert "EngineSpeed_datetime" in frames.main.columns
    assert set(frames.long) == {"fault_codes", "can_messages", "advanced_sensors",
                                "access_key_usage"}
    assert frames.long["can_messages"].schema["BinaryValue"] == pl.Binary


def test_units_are_the_catalogues_and_the_streams_string_beside_it() -> None:
    values = [frame(1, V2, {"EngineSpeed": {"value": 1.0, "unit": "rev/min", "datetime": T0},
                            "RedStopLamp": {"value": True, "unit": None, "datetime": T0},
                            "Altitude": {"value": 3.0, "unit": "ft", "datetime": T0}})]
    out = _decode.decode(records(values), {1: V2})
    units = machine_insights.units(out.records, [V2], raw_units=out.units)
    assert units.schema == pl.Schema({"insight": pl.String, "unit": pl.String,
                                      "raw_unit": pl.String, "value_type": pl.String})
    by = {r["insight"]: r for r in units.to_dicts()}
    # ``unit``: one vocabulary (the catalogue's), present in the window or not.
    assert by["EngineSpeed"]["unit"] == catalogue()["EngineSpeed"].unit
    assert by["EngineSpeed"]["raw_unit"] == "rev/min"
    assert by["EngineCoolantTemperature"]["unit"] == catalogue()[
        "EngineCoolantTemperature"].unit
    assert by["EngineCoolantTemperature"]["raw_unit"] is None
    assert by["RedStopLamp"] == {"insight": "RedStopLamp", "unit": None, "raw_unit": None,
                                 "value_type": "boolean"}
    assert by["Altitude_insight"]["raw_unit"] == "ft"
    assert by["CumulativeOperatingHours"]["value_type"] == "double"
    assert units["insight"].to_list() == [
        c for c in machine_insights.flatten(out.records).main.columns
        if f"{c}_datetime" in by or c in by]
    only_schema = machine_insights.units([V1])
    assert "RedStopLamp" not in only_schema["insight"].to_list()
    assert only_schema.height == len(catalogue())
    assert only_schema["unit"].to_list() == units.filter(
        pl.col("insight").is_in(only_schema["insight"].to_list()))["unit"].to_list()


def test_units_still_in_the_records_are_read_too() -> None:
    frame_with_units = pl.DataFrame({"EngineSpeed": [None, {"value": 2.0, "unit": "rpm",
                                                            "datetime": None}]})
    units = machine_insights.units(frame_with_units)
    assert units.filter(pl.col("insight") == "EngineSpeed")["raw_unit"].item() == "rpm"


def test_can_messages_with_a_double_or_string_union_land_in_the_same_columns() -> None:
    schema = json.loads(V1)
    can = next(f for f in schema["fields"] if f["name"] == "CANMessages")
    items = can["type"][1]["items"]["fields"]
    items[:] = [f for f in items if f["name"] != "ParsedStringValue"]
    next(f for f in items if f["name"] == "ParsedValue")["type"] = ["null", "double", "string"]
    text = json.dumps(schema)
    values = [frame(3, text, {"CANMessages": [{"ParsedValue": 1.5}, {"ParsedValue": "on"},
                                              {"ParsedValue": None}]})]
    frames = machine_insights.flatten(decoded(values, {3: text}))
    can_rows = frames.long["can_messages"].select("ParsedValue", "ParsedStringValue")
    assert can_rows.rows() == [(1.5, None), (None, "on"), (None, None)]


# -- RAW --------------------------------------------------------------------------------------


def test_raw_flatten() -> None:
    recs = [
        {"unitId": 7, "machineId": "M7", "time": T0, "event": 3,
         "location": {"latitude": 55.1, "longitude": 9.5}, "address": {"city": "Vejle"},
         "speed": 12.5, "input3": True, "input2ChangeCounter": 4,
         "canVariables": [{"time": T0, "variableId": 1, "name": "rpm", "value": "1200",
                           "uom": "rpm"}],
         "canFaults": [{"time": T0, "spn": 100, "fmi": 1, "occurrenceCount": 2}]},
        {"unitId": 8, "canVariables": [], "canFaults": None},
    ]
    frames = raw.flatten(decoded([frame(1, RAW, r) for r in recs], {1: RAW}))
    main = frames.main
    assert main.columns[:4] == KAFKA
    assert main.schema["event"] == pl.Int32
    assert main.schema["input2ChangeCounter"] == pl.Int32
    assert main.schema["time"] == pl.Datetime("ms", "UTC")
    row = main.row(0, named=True)
    assert (row["latitude"], row["city"], row["speed"], row["input3"]) == (55.1, "Vejle", 12.5,
                                                                          True)
    assert main.row(1, named=True)["latitude"] is None
    assert frames.long["can_variables"].select("machineId", "variableId", "value").rows() == [
        ("M7", 1, "1200")]
    assert frames.long["can_faults"]["spn"].to_list() == [100]
    empty = raw.empty_frames([RAW])
    assert empty.main.schema == main.schema
    assert {k: v.schema for k, v in empty.long.items()} == {
        k: v.schema for k, v in frames.long.items()}


def test_detect_format() -> None:
    assert detect_format(V1) == "insights"
    assert detect_format(V2) == "insights"
    assert detect_format(RAW) == "raw"
    with pytest.raises(ValueError, match="neither"):
        detect_format(json.dumps({"type": "record", "name": "Other", "fields": []}))
    with pytest.raises(ValueError, match="not a record"):
        detect_format('"string"')


def test_catalogue() -> None:
    cat = catalogue()
    assert len(cat) == 137
    assert cat["AfterTreatmentDieselParticulateFilterActiveRegenerationState"].enum_values == (
        "NOT_ACTIVE", "ACTIVE", "REGENERATION_NEEDED")
    assert cat["CumulativeOperatingHours"].is_hours
    assert cat["AcPhaseL1NeturalRMSVoltage"].replaced_by == "AcPhaseL1NeutralRMSVoltage"
