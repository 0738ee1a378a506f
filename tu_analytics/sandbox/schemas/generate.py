"""Generate the sandbox's Avro schemas from one declarative source.

The Machine Insights layout follows Trackunit's published streaming data format
(``streaming_format.md``); the insight catalogue is ``tu_analytics/formats/machine_insights.csv``.
Run ``python -m tu_analytics.sandbox.schemas.generate`` after changing either; the ``.avsc``
files are committed so that the registry always receives byte-identical schemas.

Where the published format is specific, the schemas copy it; where it says something varies,
it varies here, deterministically (the real Avro schema is only in Trackunit's registry):

- every field is a ``["null", T]`` union with default ``null`` ("every data field is optional");
- the ``Cumulative*Hours`` counters use the published Hours layout ``{Hour, datetime}``;
- every other insight is its own record ``{<value>, <unit>, datetime}``. The value field's name
  differs per insight (:func:`value_field`: the insight's own name as in the ISO extended export,
  ``value``, ``Value`` or the camel-case name) and some insights name the unit field differently
  (:func:`unit_field`: ``unit``, ``UnitOfMeasurement`` or ``units``; always containing "unit").
  Enum-valued insights are strings (the docs say "floating point or boolean"; enums likely
  arrive as text); counts are ``long``;
- ``CANMessages.ParsedValue`` is "double or string" and ``CanMessageValues`` is a union of the
  three published records ``CanMessageValue``, ``CanMessageMinMax`` and ``CanMessageAccumulated``;
- shared record types are defined once and then referenced by name.

Versions (each BACKWARD compatible with the one before, as the registry's global rule demands;
only changes Avro resolves):

- v1: measurement times as plain ``long`` epoch milliseconds (as the docs' examples);
  ``ParsedValue`` ``["null", "double"]``;
- v2: adds the warning lamps of the ISO 15143-3 extended export (optional fields) and widens
  ``ParsedValue`` to ``["null", "double", "string"]``;
- v3: marks every measurement time ``timestamp-millis`` (same bytes) and adds two more optional
  extended-export insights.
"""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
CATALOGUE = HERE.parent.parent / "formats" / "machine_insights.csv"
NAMESPACE = "com.trackunit.streaming"
VERSIONS = (1, 2, 3)

# Fields added by version 2 and 3 (BACKWARD compatible: new optional fields with defaults).
# These are in the ISO 15143-3 extended export but not in data-model.md.
V2_LAMPS = ["AmberWarningLamp", "MalfunctionIndicatorLamp", "ProtectLamp", "RedStopLamp"]
V3_EXTRAS = [("AfterTreatmentScrOperatorInducementSeverity", "double"),
             ("DieselParticulateFilterLampCommand", "string")]


def ts(version: int) -> Any:
    """A measurement time: plain epoch-ms ``long`` before v3, ``timestamp-millis`` from v3."""
    return {"type": "long", "logicalType": "timestamp-millis"} if version >= 3 else "long"


def opt(t: Any) -> list[Any]:
    return ["null", t]


def field(name: str, t: Any) -> dict[str, Any]:
    return {"name": name, "type": opt(t), "default": None}


def _digest(name: str, salt: str) -> int:
    return hashlib.blake2b(f"{salt}/{name}".encode(), digest_size=2).digest()[0]


def value_field(insight: str) -> str:
    """The name of an insight's value field: differs per insight, stable forever."""
    k = _digest(insight, "value") % 8
    if k < 4:
        return insight
    if k < 6:
        return "value"
    return "Value" if k == 6 else insight[0].lower() + insight[1:]


def unit_field(insight: str) -> str:
    """The name of an insight's unit field: ``unit`` mostly; "naming sometimes varies"."""
    k = _digest(insight, "unit") % 10
    return "UnitOfMeasurement" if k == 0 else "units" if k == 1 else "unit"


def catalogue() -> list[dict[str, str]]:
    with CATALOGUE.open(newline="") as f:
        return list(csv.DictReader(f))


def is_hours(row: dict[str, str]) -> bool:
    return row["name"].startswith("Cumulative") and row["name"].endswith("Hours")


_AVRO = {"double": "double", "boolean": "boolean", "count": "long", "enum": "string",
         "string": "string"}


def insight_record(name: str, value_type: str, version: int) -> dict[str, Any]:
    """The record of one (non-hours) insight: value, unit and measurement time."""
    return {"type": "record", "name": f"{name}Insight", "namespace": NAMESPACE, "fields": [
        field(value_field(name), _AVRO[value_type]), field(unit_field(name), "string"),
        field("datetime", ts(version))]}


def _hours(version: int, first: bool) -> Any:
    if not first:
        return f"{NAMESPACE}.HoursRecord"
    return {"type": "record", "name": "HoursRecord", "namespace": NAMESPACE,
            "fields": [field("Hour", "double"), field("datetime", ts(version))]}


def _identity_fields(version: int) -> list[dict[str, Any]]:
    return [
        field("EquipmentHeader", {"type": "record", "name": "EquipmentHeader", "fields": [
            field("UnitInstallDateTime", ts(version)), field("OEMName", "string"),
            field("Model", "string"), field("EquipmentID", "string"),
            field("SerialNumber", "string"), field("PIN", "string")]}),
        field("Metadata", {"type": "record", "name": "Metadata", "fields": [
            field("TelematicSerialNumber", "string"), field("MachineId", "string"),
            field("UnitId", "long"), field("ExternalReferenceNumber", "string")]}),
        field("Location", {"type": "record", "name": "Location", "fields": [
            field("Latitude", "double"), field("Longitude", "double"),
            field("Altitude", "double"), field("AltitudeUnits", "string"),
            field("datetime", ts(version))]}),
        field("LocationMetadata", {"type": "record", "name": "LocationMetadata", "fields": [
            field("AccuracyRadius", "double"), field("HighAccuracy", "boolean")]}),
        field("LocationAddress", {"type": "record", "name": "LocationAddress", "fields": [
            field("Country", "string"), field("Zipcode", "string"), field("City", "string"),
            field("Address", "string"), field("GeoHash", "string"),
            field("datetime", ts(version))]}),
        field("AccessControlKeyUsage", {"type": "array", "items": {
            "type": "record", "name": "AccessControlKeyUsageItem", "fields": [
                field("OperatorId", "string"), field("KeyId", "string"),
                field("Operation", {"type": "enum", "name": "KeyOperation",
                                    "symbols": ["LOCK", "UNLOCK"]}),
                field("AccessType", {"type": "enum", "name": "AccessType", "symbols": [
                    "DIGITAL_KEY", "ROLLING_PIN", "STATIC_PIN", "KEY_CARD", "KEYPAD_USE"]}),
                field("Success", "boolean"), field("datetime", ts(version))]}}),
    ]


def can_values() -> list[Any]:
    """The published ``CanMessageValues``: exactly one of three records."""
    def rec(name: str, fields: list[str]) -> dict[str, Any]:
        return {"type": "record", "name": name, "fields": [field(f, "double") for f in fields]}
    return ["null", rec("CanMessageValue", ["value"]),
            rec("CanMessageMinMax", ["MinValue", "MaxValue"]),
            rec("CanMessageAccumulated", ["value"])]


def _can_field(version: int) -> dict[str, Any]:
    parsed = ["null", "double", "string"] if version >= 2 else ["null", "double"]
    return field("CANMessages", {"type": "array", "items": {
        "type": "record", "name": "CANMessage", "fields": [
            field("datetime", ts(version)), field("UnitOfMeasurement", "string"),
            field("VariableId", "long"), field("VariableName", "string"),
            {"name": "ParsedValue", "type": parsed, "default": None},
            {"name": "CanMessageValues", "type": can_values(), "default": None},
            field("CanMessageData", {
                "type": "record", "name": "CanMessageData", "fields": [
                    field("CanId", "long"), field("SourceAddress", "int"),
                    field("BinaryValue", "bytes"), field("Counter", "long"),
                    field("CapturingPeriod", "int"), field("CanType", "string")]})]}})


def _array_fields(version: int) -> list[dict[str, Any]]:
    return [
        _can_field(version),
        field("AdvancedSensors", {"type": "array", "items": {
            "type": "record", "name": "AdvancedSensor", "fields": [
                field("datetime", ts(version)), field("UnitOfMeasurement", "string"),
                field("SensorId", "long"), field("SensorName", "string"),
                field("NumericValue", "double"), field("StringValue", "string"),
                field("Source", {"type": "enum", "name": "SensorSource", "symbols": [
                    "MODBUS", "CAN1", "CAN2", "ONEI3", "BLUETOOTH_TAG", "API_INTEGRATION",
                    "OTHER"]})]}}),
        field("FaultCodes", {"type": "array", "items": {
            "type": "record", "name": "FaultCode", "fields": [
                field("CodeIdentifier", "string"), field("CodeDescription", "string"),
                field("CodeSeverity", "string"), field("CodeSource", "string"),
                field("datetime", ts(version)), field("datetimeCleared", ts(version))]}}),
    ]


def machine_insights(version: int) -> dict[str, Any]:
    """The Machine Insights writer schema of ``version`` (1, 2 or 3)."""
    rows = catalogue()
    hours = [r for r in rows if is_hours(r)]
    fields = _identity_fields(version)
    fields += [field(r["name"], _hours(version, i == 0)) for i, r in enumerate(hours)]
    fields += [field(r["name"], insight_record(r["name"], r["value_type"], version))
               for r in rows if not is_hours(r)]
    fields += _array_fields(version)
    if version >= 2:
        fields += [field(n, insight_record(n, "boolean", version)) for n in V2_LAMPS]
    if version >= 3:
        fields += [field(n, insight_record(n, t, version)) for n, t in V3_EXTRAS]
    return {
        "type": "record",
        "name": "MachineInsightsMessage",
        "namespace": NAMESPACE,
        "doc": f"Trackunit Streaming API, Machine Insights format (sandbox schema v{version}).",
        "fields": fields,
    }


def raw() -> dict[str, Any]:
    """RAW: the classic Report/UnitHistory row, plus CAN variables and faults."""
    t = {"type": "long", "logicalType": "timestamp-millis"}
    f: list[dict[str, Any]] = [
        field("unitId", "long"), field("serialNumber", "string"), field("machineId", "string"),
        field("time", t), field("event", "int"), field("keyId", "string"),
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
                field("time", t), field("variableId", "int"), field("name", "string"),
                field("value", "string"), field("uom", "string")]}}),
        field("canFaults", {"type": "array", "items": {
            "type": "record", "name": "RawCanFault", "fields": [
                field("time", t), field("spn", "int"), field("fmi", "int"),
                field("occurrenceCount", "int"), field("name", "string"),
                field("description", "string")]}}),
    ]
    return {"type": "record", "name": "RawUnitData", "namespace": "com.trackunit.streaming.raw",
            "doc": "Trackunit Streaming API, RAW format (sandbox schema v1).", "fields": f}


def main() -> None:
    out = {f"machine_insights_v{v}.avsc": machine_insights(v) for v in VERSIONS}
    out["raw_v1.avsc"] = raw()
    for name, schema in out.items():
        (HERE / name).write_text(json.dumps(schema, indent=1) + "\n")


if __name__ == "__main__":
    main()
