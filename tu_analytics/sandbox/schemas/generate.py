"""Generate the sandbox's Avro schemas from one declarative source.

The Machine Insights layout follows Trackunit's published streaming data format; the
insight catalogue is ``tu_analytics/formats/machine_insights.csv``. Run
``python -m tu_analytics.sandbox.schemas.generate`` after changing either; the ``.avsc``
files are committed so that the registry always receives byte-identical schemas.

Choices (the real Avro schema is only in Trackunit's registry):
- every field is a ``["null", T]`` union with default ``null`` ("every data field is optional");
- measurement times are ``long`` with ``timestamp-millis`` (epoch ms, as published);
- the ``Cumulative*Hours`` counters use the published Hours layout ``{Hour, datetime}``;
  every other insight is ``{value, unit, datetime}``; enum insights use Avro enums;
- multi-branch unions are avoided (see CANMessages): Polars, polars-avro and jetliner all
  refuse them, so a schema with them would force the slow decode path;
- shared record types are defined once and then referenced by name, as a real schema
  with ~140 insight fields would be. (Decoders must cope with named references.)
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
CATALOGUE = HERE.parent.parent / "formats" / "machine_insights.csv"
NAMESPACE = "com.trackunit.streaming"
TS = {"type": "long", "logicalType": "timestamp-millis"}

# Fields added by version 2 (BACKWARD compatible: new optional fields with defaults).
# These lamps are in the ISO 15143-3 extended export but not in data-model.md.
V2_LAMPS = ["AmberWarningLamp", "MalfunctionIndicatorLamp", "ProtectLamp", "RedStopLamp"]


def opt(t: Any) -> list[Any]:
    return ["null", t]


def field(name: str, t: Any) -> dict[str, Any]:
    return {"name": name, "type": opt(t), "default": None}


def catalogue() -> list[dict[str, str]]:
    with CATALOGUE.open(newline="") as f:
        return list(csv.DictReader(f))


def is_hours(row: dict[str, str]) -> bool:
    return row["name"].startswith("Cumulative") and row["name"].endswith("Hours")


class _Types:
    """Emits a named type's full definition on first use, its name afterwards."""

    def __init__(self) -> None:
        self.defined: set[str] = set()

    def once(self, name: str, definition: dict[str, Any]) -> Any:
        if name in self.defined:
            return f"{NAMESPACE}.{name}"
        self.defined.add(name)
        return definition


def _insight_type(types: _Types, row: dict[str, str]) -> Any:
    if is_hours(row):
        return types.once(
            "HoursRecord",
            {"type": "record", "name": "HoursRecord", "namespace": NAMESPACE,
             "fields": [field("Hour", "double"), field("datetime", TS)]},
        )
    vt = row["value_type"]
    if vt == "enum":
        enum_name = row["name"] + "Value"
        rec_name = row["name"] + "Insight"
        return types.once(rec_name, {
            "type": "record", "name": rec_name, "namespace": NAMESPACE,
            "fields": [
                field("value", {"type": "enum", "name": enum_name,
                                "symbols": row["enum_values"].split("|")}),
                field("unit", "string"),
                field("datetime", TS),
            ],
        })
    avro = {"double": "double", "boolean": "boolean", "count": "long"}[vt]
    rec_name = {"double": "DoubleInsight", "boolean": "BooleanInsight", "count": "CountInsight"}[vt]
    return types.once(rec_name, {
        "type": "record", "name": rec_name, "namespace": NAMESPACE,
        "fields": [field("value", avro), field("unit", "string"), field("datetime", TS)],
    })


def machine_insights(version: int) -> dict[str, Any]:
    types = _Types()
    rows = catalogue()
    hours = [r for r in rows if is_hours(r)]
    insights = [r for r in rows if not is_hours(r)]
    fields: list[dict[str, Any]] = [
        field("EquipmentHeader", {
            "type": "record", "name": "EquipmentHeader", "fields": [
                field("UnitInstallDateTime", TS), field("OEMName", "string"),
                field("Model", "string"), field("EquipmentID", "string"),
                field("SerialNumber", "string"), field("PIN", "string"),
            ]}),
        field("Metadata", {
            "type": "record", "name": "Metadata", "fields": [
                field("TelematicSerialNumber", "string"), field("MachineId", "string"),
                field("UnitId", "long"), field("ExternalReferenceNumber", "string"),
            ]}),
        field("Location", {
            "type": "record", "name": "Location", "fields": [
                field("Latitude", "double"), field("Longitude", "double"),
                field("Altitude", "double"), field("AltitudeUnits", "string"),
                field("datetime", TS),
            ]}),
        field("LocationMetadata", {
            "type": "record", "name": "LocationMetadata", "fields": [
                field("AccuracyRadius", "double"), field("HighAccuracy", "boolean"),
            ]}),
        field("LocationAddress", {
            "type": "record", "name": "LocationAddress", "fields": [
                field("Country", "string"), field("Zipcode", "string"), field("City", "string"),
                field("Address", "string"), field("GeoHash", "string"), field("datetime", TS),
            ]}),
        field("AccessControlKeyUsage", {"type": "array", "items": {
            "type": "record", "name": "AccessControlKeyUsageItem", "fields": [
                field("OperatorId", "string"), field("KeyId", "string"),
                field("Operation", {"type": "enum", "name": "KeyOperation",
                                    "symbols": ["LOCK", "UNLOCK"]}),
                field("AccessType", {"type": "enum", "name": "AccessType", "symbols": [
                    "DIGITAL_KEY", "ROLLING_PIN", "STATIC_PIN", "KEY_CARD", "KEYPAD_USE"]}),
                field("Success", "boolean"), field("datetime", TS),
            ]}}),
    ]
    fields += [field(r["name"], _insight_type(types, r)) for r in hours]
    fields += [field(r["name"], _insight_type(types, r)) for r in insights]
    fields += [
        field("CANMessages", {"type": "array", "items": {
            "type": "record", "name": "CANMessage", "fields": [
                field("datetime", TS), field("UnitOfMeasurement", "string"),
                field("VariableId", "long"), field("VariableName", "string"),
                # Published as "double or string" and "one of three variants"; multi-branch
                # unions are split into nullable fields because no native (Rust) Avro reader
                # decodes them. The library still reads such schemas (on a slower path).
                field("ParsedValue", "double"), field("ParsedStringValue", "string"),
                field("CanMessageValues", {
                    "type": "record", "name": "CanMessageValues", "fields": [
                        field("Kind", {"type": "enum", "name": "CanMessageValueKind",
                                       "symbols": ["VALUE", "MIN_MAX", "ACCUMULATED"]}),
                        field("value", "double"), field("MinValue", "double"),
                        field("MaxValue", "double"),
                    ]}),
                field("CanMessageData", {
                    "type": "record", "name": "CanMessageData", "fields": [
                        field("CanId", "long"), field("SourceAddress", "int"),
                        field("BinaryValue", "bytes"), field("Counter", "long"),
                        field("CapturingPeriod", "int"), field("CanType", "string"),
                    ]}),
            ]}}),
        field("AdvancedSensors", {"type": "array", "items": {
            "type": "record", "name": "AdvancedSensor", "fields": [
                field("datetime", TS), field("UnitOfMeasurement", "string"),
                field("SensorId", "long"), field("SensorName", "string"),
                field("NumericValue", "double"), field("StringValue", "string"),
                field("Source", {"type": "enum", "name": "SensorSource", "symbols": [
                    "MODBUS", "CAN1", "CAN2", "ONEI3", "BLUETOOTH_TAG", "API_INTEGRATION",
                    "OTHER"]}),
            ]}}),
        field("FaultCodes", {"type": "array", "items": {
            "type": "record", "name": "FaultCode", "fields": [
                field("CodeIdentifier", "string"), field("CodeDescription", "string"),
                field("CodeSeverity", "string"), field("CodeSource", "string"),
                field("datetime", TS), field("datetimeCleared", TS),
            ]}}),
    ]
    if version >= 2:
        fields += [field(name, "com.trackunit.streaming.BooleanInsight") for name in V2_LAMPS]
    return {
        "type": "record",
        "name": "MachineInsightsMessage",
        "namespace": NAMESPACE,
        "doc": f"Trackunit Streaming API, Machine Insights format (sandbox schema v{version}).",
        "fields": fields,
    }


def raw() -> dict[str, Any]:
    """RAW: the classic Report/UnitHistory row, plus CAN variables and faults."""
    f: list[dict[str, Any]] = [
        field("unitId", "long"), field("serialNumber", "string"), field("machineId", "string"),
        field("time", TS), field("event", "int"), field("keyId", "string"),
        field("location", {"type": "record", "name": "RawLocation", "fields": [
            field("latitude", "double"), field("longitude", "double")]}),
        field("address", {"type": "record", "name": "RawAddress", "fields": [
            field("country", "string"), field("zipCode", "string"), field("city", "string"),
            field("streetAddress", "string")]}),
        field("heading", "int"), field("speed", "double"), field("km", "double"),
    ]
    f += [field(n, "double") for n in ("run1", "run2", "run3", "run4", "runOdo")]
    f += [field(n, "double") for n in ("temperature1", "temperature2")]
    f += [field(f"input{i}", "boolean") for i in range(1, 11)]
    f += [field(f"output{i}", "boolean") for i in range(1, 6)]
    f += [field(f"analogInput{i}", "double") for i in (1, 2, 4)]
    f += [field(f"input{i}ChangeCounter", "int") for i in range(1, 5)]
    f += [field("batteryLevel", "double"), field("externalPower", "double")]
    f += [
        field("canVariables", {"type": "array", "items": {
            "type": "record", "name": "RawCanVariable", "fields": [
                field("time", TS), field("variableId", "int"), field("name", "string"),
                field("value", "string"), field("uom", "string")]}}),
        field("canFaults", {"type": "array", "items": {
            "type": "record", "name": "RawCanFault", "fields": [
                field("time", TS), field("spn", "int"), field("fmi", "int"),
                field("occurrenceCount", "int"), field("name", "string"),
                field("description", "string")]}}),
    ]
    return {"type": "record", "name": "RawUnitData", "namespace": "com.trackunit.streaming.raw",
            "doc": "Trackunit Streaming API, RAW format (sandbox schema v1).", "fields": f}


def main() -> None:
    out = {
        "machine_insights_v1.avsc": machine_insights(1),
        "machine_insights_v2.avsc": machine_insights(2),
        "raw_v1.avsc": raw(),
    }
    for name, schema in out.items():
        (HERE / name).write_text(json.dumps(schema, indent=1) + "\n")


if __name__ == "__main__":
    main()
