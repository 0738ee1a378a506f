"""Machine Insights: decoded records -> ``main`` (one row per record) and the long frames.

Insight columns are every catalogued insight plus every insight-shaped field of the writer
schema(s): a record with ``value`` (and optionally ``unit``, ``datetime``), or the
``Cumulative*Hours`` layout ``{Hour, datetime}``. Each becomes ``X`` and ``X_datetime``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Final

import polars as pl

from .._decode import records_schema, struct_fields
from . import KAFKA_COLUMNS, TS, Frames, Path, empty_records, get, kafka_columns, long_frame
from ._catalogue import Insight, ValueType, catalogue

__all__ = ["empty_frames", "flatten", "insight_columns", "units"]

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
        ("ValueKind", [("CanMessageValues", "Kind")], pl.String()),
        ("Value", [("CanMessageValues", "value")], pl.Float64()),
        ("MinValue", [("CanMessageValues", "MinValue")], pl.Float64()),
        ("MaxValue", [("CanMessageValues", "MaxValue")], pl.Float64()),
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
    value_field: str  # the value field: its name differs per insight, "Hour" for hours
    value_type: ValueType
    catalogue_unit: str | None

    @property
    def name(self) -> str:
        """The column name (``name`` + ``_datetime`` holds the measurement time)."""
        return f"{self.field}_insight" if self.field in _TAKEN else self.field

    @property
    def dtype(self) -> pl.DataType:
        return _VALUE_DTYPES[self.value_type]


def insight_columns(schema: Mapping[str, pl.DataType]) -> list[InsightColumn]:
    """Catalogued insights (CSV order), then insight-shaped fields of ``schema`` (the decoded
    records' schema) that the catalogue does not know, in schema order."""
    cat = catalogue()
    cols = [_from_catalogue(i, schema.get(i.name)) for i in cat.values()]
    for name, dtype in schema.items():
        shape = _insight_shape(dtype)
        if name not in cat and shape is not None:
            cols.append(InsightColumn(name, shape[0], shape[1], None))
    return cols


def _from_catalogue(insight: Insight, dtype: pl.DataType | None) -> InsightColumn:
    shape = _insight_shape(dtype) if dtype is not None else None
    field = shape[0] if shape else ("Hour" if insight.is_hours else "value")
    value_type: ValueType = "double" if insight.is_hours else insight.value_type
    return InsightColumn(insight.name, field, value_type, insight.unit)


def _insight_shape(dtype: pl.DataType | None) -> tuple[str, ValueType] | None:
    """(value field, value type) when ``dtype`` is an insight-shaped struct: ``datetime``, at
    most one unit field (a name containing "unit") and one value field, whatever its name (the
    published format names it per insight), or the Hours record ``{Hour, datetime}``."""
    if not isinstance(dtype, pl.Struct):
        return None
    fields = struct_fields(dtype)
    if set(fields) == {"Hour", "datetime"}:
        return "Hour", "double"
    units = [k for k in fields if "unit" in k.lower()]
    values = [k for k in fields if k != "datetime" and k not in units]
    if "datetime" not in fields or len(units) > 1 or len(values) != 1:
        return None
    value_type = _value_type(fields[values[0]])
    return None if value_type is None else (values[0], value_type)


def _unit_field(dtype: pl.DataType | None) -> str | None:
    """The unit field of an insight-shaped struct (``unit`` or a name containing it)."""
    if _insight_shape(dtype) is None or dtype is None:
        return None
    return next((k for k in struct_fields(dtype) if "unit" in k.lower()), None)


def _value_type(dtype: pl.DataType) -> ValueType | None:
    if dtype == pl.Boolean():
        return "boolean"
    if dtype.is_integer():
        return "count"
    if dtype.is_numeric():
        return "double"
    return "enum" if dtype == pl.String() else None


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
    return Frames(main=main, long=long)


def _insight(schema: Mapping[str, pl.DataType], col: InsightColumn) -> list[pl.Expr]:
    return [
        get(schema, [(col.field, col.value_field)], col.dtype).alias(col.name),
        get(schema, [(col.field, "datetime")], TS).alias(f"{col.name}_datetime"),
    ]


def empty_frames(schemas: Iterable[str]) -> Frames:
    """Typed, zero-row frames with every column ``flatten`` gives for these writer schemas."""
    return flatten(empty_records(schemas))


def units(*sources: pl.DataFrame | str | Iterable[str]) -> pl.DataFrame:
    """``insight``, ``unit``, ``value_type`` for every insight column. Sources are decoded
    records (the unit seen in the data wins) and/or writer schemas (JSON), which add their
    insight-shaped fields; the catalogue's unit is the fallback."""
    frames = [s for s in sources if isinstance(s, pl.DataFrame)]
    texts = [t for s in sources if not isinstance(s, pl.DataFrame)
             for t in ([s] if isinstance(s, str) else s)]
    schema = dict(records_schema(texts))
    for frame in frames:
        schema.update(frame.schema)
    cols = insight_columns(schema)
    seen = _seen_units(frames, cols)
    return pl.DataFrame(
        {
            "insight": [c.name for c in cols],
            "unit": [seen.get(c.name) or c.catalogue_unit for c in cols],
            "value_type": [c.value_type for c in cols],
        },
        schema={"insight": pl.String, "unit": pl.String, "value_type": pl.String},
    )


def _seen_units(frames: Sequence[pl.DataFrame], cols: Sequence[InsightColumn]) -> dict[str, str]:
    """The first non-null ``unit`` of each insight in the records (one select per frame)."""
    seen: dict[str, str] = {}
    for frame in frames:
        schema = frame.schema  # built once: DataFrame.schema is not cached by Polars
        exprs = [
            pl.col(c.field).struct.field(unit).drop_nulls().first().alias(c.name)
            for c in cols
            if c.name not in seen and (unit := _unit_field(schema.get(c.field)))
        ]
        if exprs and frame.height:
            row = frame.select(exprs).row(0, named=True)
            seen.update({k: v for k, v in row.items() if v is not None})
    return seen
