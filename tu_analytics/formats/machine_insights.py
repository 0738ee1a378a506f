"""Machine Insights: decoded records -> ``main`` (one row per record) and the long frames.

Insight columns are every catalogued insight plus every insight-shaped field of the writer
schema(s). The published format names each insight's value field differently and sometimes its
unit field too, so an insight record is recognised by one rule (:func:`insight_layout`): it has
a ``datetime`` (the measurement time), a value field whose type matches the catalogue's
``value_type``, and at most one more field, a string: the unit. Each insight becomes ``X`` and
``X_datetime``, whatever its fields are called; the unit is not kept per row (``units``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final, Literal

import polars as pl

from .._decode import records_schema, struct_fields
from . import BRANCH, KAFKA_COLUMNS, TS, Frames, Path, empty_records, get, kafka_columns, long_frame
from ._catalogue import Insight, ValueType, catalogue

__all__ = ["UNITS_SCHEMA", "avro_insight_layout", "empty_frames", "empty_units", "flatten",
           "insight_columns", "insight_layout", "units"]

_Spec = Sequence[tuple[str, Sequence[Path], pl.DataType]]

IDENTITY: Final[_Spec] = [
    ("MachineId", [("Metadata", "MachineId")], pl.String()),
    ("UnitId", [("Metadata", "UnitId")], pl.Int64()),
    ("TelematicSerialNumber", [("Metadata", "TelematicSerialNumber")], pl.String()),
    ("ExternalReferenceNumber", [("Metadata", "ExternalReferenceNumber")], pl.String()),
    ("OEMName", [("EquipmentHeader", "OEMName")], pl.String()),
    ("Model", [("EquipmentHeader", "Model")], pl.String()),
    ("EquipmentID", [("EquipmentHeader", "EquipmentID")], pl.String()),
    ("SerialNumber", [("EquipmentHeader", "SerialNumber")], pl.String()),
    ("PIN", [("EquipmentHeader", "PIN")], pl.String()),
    ("UnitInstallDateTime", [("EquipmentHeader", "UnitInstallDateTime")], TS),
]
LOCATION: Final[_Spec] = [
    ("Latitude", [("Location", "Latitude")], pl.Float64()),
    ("Longitude", [("Location", "Longitude")], pl.Float64()),
    ("Altitude", [("Location", "Altitude")], pl.Float64()),
    ("AltitudeUnits", [("Location", "AltitudeUnits")], pl.String()),
    ("Location_datetime", [("Location", "datetime")], TS),
    ("AccuracyRadius", [("LocationMetadata", "AccuracyRadius")], pl.Float64()),
    ("HighAccuracy", [("LocationMetadata", "HighAccuracy")], pl.Boolean()),
    ("Country", [("LocationAddress", "Country")], pl.String()),
    ("Zipcode", [("LocationAddress", "Zipcode")], pl.String()),
    ("City", [("LocationAddress", "City")], pl.String()),
    ("Address", [("LocationAddress", "Address")], pl.String()),
    ("GeoHash", [("LocationAddress", "GeoHash")], pl.String()),
    ("LocationAddress_datetime", [("LocationAddress", "datetime")], TS),
]

# Long frames: (frame name, list column, element spec).
LONG: Final[Sequence[tuple[str, str, _Spec]]] = [
    ("fault_codes", "FaultCodes", [
        ("CodeIdentifier", [("CodeIdentifier",)], pl.String()),
        ("CodeDescription", [("CodeDescription",)], pl.String()),
        ("CodeSeverity", [("CodeSeverity",)], pl.String()),
        ("CodeSource", [("CodeSource",)], pl.String()),
        ("datetime", [("datetime",)], TS),
        ("datetimeCleared", [("datetimeCleared",)], TS),
    ]),
    ("can_messages", "CANMessages", [
        ("datetime", [("datetime",)], TS),
        ("UnitOfMeasurement", [("UnitOfMeasurement",)], pl.String()),
        ("VariableId", [("VariableId",)], pl.Int64()),
        ("VariableName", [("VariableName",)], pl.String()),
        # A writer that publishes ParsedValue as a double-or-string union gets a struct with
        # one field per branch from the decoder; both layouts land in the same two columns.
        ("ParsedValue", [("ParsedValue",), ("ParsedValue", "double")], pl.Float64()),
        ("ParsedStringValue", [("ParsedStringValue",), ("ParsedValue", "string")], pl.String()),
        # CanMessageValues: the published union of three records arrives as a struct with one
        # field per branch (exactly one set); an older layout has one record with a ``Kind``.
        ("ValueKind", [("CanMessageValues", "Kind"), ("CanMessageValues", BRANCH)], pl.String()),
        ("Value", [("CanMessageValues", "value"), ("CanMessageValues", "CanMessageValue", "value"),
                   ("CanMessageValues", "CanMessageAccumulated", "value")], pl.Float64()),
        ("MinValue", [("CanMessageValues", "MinValue"),
                      ("CanMessageValues", "CanMessageMinMax", "MinValue")], pl.Float64()),
        ("MaxValue", [("CanMessageValues", "MaxValue"),
                      ("CanMessageValues", "CanMessageMinMax", "MaxValue")], pl.Float64()),
        ("CanId", [("CanMessageData", "CanId")], pl.Int64()),
        ("SourceAddress", [("CanMessageData", "SourceAddress")], pl.Int32()),
        ("BinaryValue", [("CanMessageData", "BinaryValue")], pl.Binary()),
        ("Counter", [("CanMessageData", "Counter")], pl.Int64()),
        ("CapturingPeriod", [("CanMessageData", "CapturingPeriod")], pl.Int32()),
        ("CanType", [("CanMessageData", "CanType")], pl.String()),
    ]),
    ("advanced_sensors", "AdvancedSensors", [
        ("datetime", [("datetime",)], TS),
        ("UnitOfMeasurement", [("UnitOfMeasurement",)], pl.String()),
        ("SensorId", [("SensorId",)], pl.Int64()),
        ("SensorName", [("SensorName",)], pl.String()),
        ("NumericValue", [("NumericValue",)], pl.Float64()),
        ("StringValue", [("StringValue",)], pl.String()),
        ("Source", [("Source",)], pl.String()),
    ]),
    ("access_key_usage", "AccessControlKeyUsage", [
        ("OperatorId", [("OperatorId",)], pl.String()),
        ("KeyId", [("KeyId",)], pl.String()),
        ("Operation", [("Operation",)], pl.String()),
        ("AccessType", [("AccessType",)], pl.String()),
        ("Success", [("Success",)], pl.Boolean()),
        ("datetime", [("datetime",)], TS),
    ]),
]

# The published CanMessageValues union's branches, named as the sandbox's older ``Kind`` enum.
_KIND_OF_BRANCH: Final = {"CanMessageValue": "VALUE", "CanMessageMinMax": "MIN_MAX",
                          "CanMessageAccumulated": "ACCUMULATED"}

_VALUE_DTYPES: Final[Mapping[ValueType, pl.DataType]] = {
    "double": pl.Float64(), "boolean": pl.Boolean(), "count": pl.Int64(), "enum": pl.String(),
}


# Names taken by identity/location columns. The catalogue's ``Altitude`` insight is one: it keeps
# the location's ``Altitude`` (docs/frames.md) and becomes ``Altitude_insight``.
_TAKEN: Final = frozenset({*KAFKA_COLUMNS, *(n for n, _, _ in (*IDENTITY, *LOCATION))})


@dataclass(frozen=True)
class InsightColumn:
    """One insight: where its value sits in the record's struct and its column dtype."""

    field: str  # the top-level Avro field
    value_field: str  # "value" or "Hour"
    value_type: ValueType
    catalogue_unit: str | None

    @property
    def name(self) -> str:
        """The column name (``name`` + ``_datetime`` holds the measurement time)."""
        return f"{self.field}_insight" if self.field in _TAKEN else self.field

    @property
    def dtype(self) -> pl.DataType:
        return _VALUE_DTYPES[self.value_type]


# "null": a column with no value at all (inferred from all-null data): it can only be a unit.
Kind = Literal["double", "count", "boolean", "string", "null", "other"]
# Which field kinds can hold a catalogue value type (a double may arrive as an integer).
_HOLDS: Final[Mapping[ValueType, frozenset[str]]] = {
    "double": frozenset({"double", "count"}), "count": frozenset({"count"}),
    "boolean": frozenset({"boolean"}), "enum": frozenset({"string"}),
}
_TYPE_OF_KIND: Final[Mapping[str, ValueType]] = {
    "double": "double", "count": "count", "boolean": "boolean", "string": "enum",
}


def insight_layout(kinds: Mapping[str, Kind | str],
                   value_type: ValueType | None) -> tuple[str, str | None] | None:
    """(value field, unit field or None) of an insight record, from its fields' kinds; None
    when the record is not insight-shaped.

    The record has a ``datetime`` (the measurement time) and one or two other fields. The value
    is the field whose kind holds the catalogue's ``value_type`` (for an insight the catalogue
    does not know: a non-string first); the unit is the remaining field, which must be a string.
    Where two fields could be the value, a name containing "unit" is the unit.
    """
    if "datetime" not in kinds:
        return None
    rest = {n: k for n, k in kinds.items() if n != "datetime"}
    if not 1 <= len(rest) <= 2 or "other" in rest.values():
        return None
    holds = _HOLDS[value_type] if value_type else frozenset(_TYPE_OF_KIND)
    fits = sorted((n for n, k in rest.items() if k in holds),
                  key=lambda n: ("unit" in n.lower(), value_type is None and rest[n] == "string"))
    if not fits:
        return None
    value = fits[0]
    unit = next((n for n in rest if n != value), None)
    if unit is not None and rest[unit] not in ("string", "null"):
        return None
    return value, unit


def _catalogue_type(name: str) -> ValueType | None:
    insight = catalogue().get(name)
    if insight is None:
        return None
    return "double" if insight.is_hours else insight.value_type


def avro_insight_layout(name: str, kinds: Mapping[str, str]) -> tuple[str, str | None] | None:
    """:func:`insight_layout` of top-level field ``name`` with the catalogue's value type."""
    return insight_layout(kinds, _catalogue_type(name))


def insight_columns(schema: Mapping[str, pl.DataType]) -> list[InsightColumn]:
    """Catalogued insights (CSV order), then insight-shaped fields of ``schema`` (the decoded
    records' schema) that the catalogue does not know, in schema order."""
    cat = catalogue()
    cols = [_from_catalogue(i, schema.get(i.name)) for i in cat.values()]
    for name, dtype in schema.items():
        layout = _layout(name, dtype) if name not in cat else None
        if layout is not None:
            kind = _kind(struct_fields(dtype)[layout[0]])
            cols.append(InsightColumn(name, layout[0], _TYPE_OF_KIND[kind], None))
    return cols


def _from_catalogue(insight: Insight, dtype: pl.DataType | None) -> InsightColumn:
    layout = _layout(insight.name, dtype)
    field = layout[0] if layout else ("Hour" if insight.is_hours else "value")
    value_type: ValueType = "double" if insight.is_hours else insight.value_type
    return InsightColumn(insight.name, field, value_type, insight.unit)


def _layout(name: str, dtype: pl.DataType | None) -> tuple[str, str | None] | None:
    if not isinstance(dtype, pl.Struct):
        return None
    kinds = {f: _kind(t) for f, t in struct_fields(dtype).items()}
    return insight_layout(kinds, _catalogue_type(name))


def _kind(dtype: pl.DataType) -> Kind:
    if dtype == pl.Boolean():
        return "boolean"
    if dtype.is_integer():
        return "count"
    if dtype.is_float():
        return "double"
    if dtype == pl.Null():
        return "null"
    return "string" if dtype == pl.String() else "other"


def flatten(records: pl.DataFrame) -> Frames:
    """``main`` and the long frames (``fault_codes``, ``can_messages``, ``advanced_sensors``,
    ``access_key_usage``) of decoded Machine Insights records."""
    schema = records.schema
    main = records.select(
        *kafka_columns(schema),
        *[get(schema, paths, t).alias(n) for n, paths, t in (*IDENTITY, *LOCATION)],
        *[e for col in insight_columns(schema) for e in _insight(schema, col)],
    )
    ident = get(schema, [("Metadata", "MachineId")], pl.String()).alias("MachineId")
    long = {name: long_frame(records, column, ident, spec) for name, column, spec in LONG}
    # One vocabulary for the kind of CAN value, whichever layout carried it.
    long["can_messages"] = long["can_messages"].with_columns(
        pl.col("ValueKind").replace(_KIND_OF_BRANCH))
    return Frames(main=main, long=long)


def _insight(schema: Mapping[str, pl.DataType], col: InsightColumn) -> list[pl.Expr]:
    return [
        get(schema, [(col.field, col.value_field)], col.dtype).alias(col.name),
        get(schema, [(col.field, "datetime")], TS).alias(f"{col.name}_datetime"),
    ]


def empty_frames(schemas: Iterable[str]) -> Frames:
    """Typed, zero-row frames with every column ``flatten`` gives for these writer schemas."""
    return flatten(empty_records(schemas))


UNITS_SCHEMA: Final = pl.Schema({"insight": pl.String(), "unit": pl.String(),
                                  "raw_unit": pl.String(), "value_type": pl.String()})


def empty_units() -> pl.DataFrame:
    return pl.DataFrame(schema=UNITS_SCHEMA)


def units(*sources: pl.DataFrame | str | Iterable[str],
          raw_units: pl.DataFrame | None = None) -> pl.DataFrame:
    """``insight``, ``unit``, ``raw_unit``, ``value_type`` for every insight column.

    ``unit`` is the catalogue's word, the same in every window whether or not the insight
    occurs; ``raw_unit`` is the string the stream carried, when seen. Sources are decoded
    records and/or writer schemas (JSON), which add their insight-shaped fields. The stream's
    strings come from ``raw_units`` (``Decoded.units``: ``field``, ``raw_unit``) and from any
    unit fields still in the records (e.g. records built outside the decoder).
    """
    frames = [s for s in sources if isinstance(s, pl.DataFrame)]
    texts = [t for s in sources if not isinstance(s, pl.DataFrame)
             for t in ([s] if isinstance(s, str) else s)]
    schema = dict(records_schema(texts))
    for frame in frames:
        schema.update(frame.schema)
    cols = insight_columns(schema)
    seen = _seen_units(frames, cols)
    if raw_units is not None:
        for f, u in raw_units.select("field", "raw_unit").iter_rows():
            seen.setdefault(f, u)
    return pl.DataFrame(
        {
            "insight": [c.name for c in cols],
            "unit": [c.catalogue_unit for c in cols],
            "raw_unit": [seen.get(c.field) for c in cols],
            "value_type": [c.value_type for c in cols],
        },
        schema=UNITS_SCHEMA,
    )


def _seen_units(frames: Sequence[pl.DataFrame], cols: Sequence[InsightColumn]) -> dict[str, str]:
    """The first non-null unit string of each insight field still in the records (one select
    per frame), by top-level field."""
    seen: dict[str, str] = {}
    for frame in frames:
        schema = frame.schema  # built once: DataFrame.schema is not cached by Polars
        exprs = []
        for c in cols:
            layout = _layout(c.field, schema.get(c.field))
            if c.field not in seen and layout is not None and layout[1] is not None:
                exprs.append(pl.col(c.field).struct.field(layout[1]).drop_nulls().first()
                             .alias(c.field))
        if exprs and frame.height:
            row = frame.select(exprs).row(0, named=True)
            seen.update({k: v for k, v in row.items() if v is not None})
    return seen
