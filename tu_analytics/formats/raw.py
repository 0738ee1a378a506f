"""RAW: decoded records -> ``main`` (one row per record), ``can_variables`` and ``can_faults``."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Final

import polars as pl

from . import TS, Frames, Path, empty_records, get, kafka_columns, long_frame

__all__ = ["empty_frames", "flatten"]

_Column = tuple[str, Sequence[Path], pl.DataType]
_Spec = Sequence[_Column]


def _flat(names: Iterable[str], dtype: pl.DataType) -> list[_Column]:
    return [(n, [(n,)], dtype) for n in names]


MAIN: Final[_Spec] = [
    ("unitId", [("unitId",)], pl.Int64()),
    ("serialNumber", [("serialNumber",)], pl.String()),
    ("machineId", [("machineId",)], pl.String()),
    ("time", [("time",)], TS),
    ("event", [("event",)], pl.Int32()),
    ("keyId", [("keyId",)], pl.String()),
    ("latitude", [("location", "latitude"), ("latitude",)], pl.Float64()),
    ("longitude", [("location", "longitude"), ("longitude",)], pl.Float64()),
    ("country", [("address", "country"), ("country",)], pl.String()),
    ("zipCode", [("address", "zipCode"), ("zipCode",)], pl.String()),
    ("city", [("address", "city"), ("city",)], pl.String()),
    ("streetAddress", [("address", "streetAddress"), ("streetAddress",)], pl.String()),
    ("heading", [("heading",)], pl.Int32()),
    *_flat(["speed", "km", "run1", "run2", "run3", "run4", "runOdo"], pl.Float64()),
    *_flat(["temperature1", "temperature2"], pl.Float64()),
    *_flat([f"input{i}" for i in range(1, 11)], pl.Boolean()),
    *_flat([f"output{i}" for i in range(1, 6)], pl.Boolean()),
    *_flat(["analogInput1", "analogInput2", "analogInput4"], pl.Float64()),
    *_flat([f"input{i}ChangeCounter" for i in range(1, 5)], pl.Int32()),
    *_flat(["batteryLevel", "externalPower"], pl.Float64()),
]

LONG: Final[Sequence[tuple[str, str, _Spec]]] = [
    ("can_variables", "canVariables", [
        ("time", [("time",)], TS),
        ("variableId", [("variableId",)], pl.Int32()),
        ("name", [("name",)], pl.String()),
        ("value", [("value",)], pl.String()),
        ("uom", [("uom",)], pl.String()),
    ]),
    ("can_faults", "canFaults", [
        ("time", [("time",)], TS),
        ("spn", [("spn",)], pl.Int32()),
        ("fmi", [("fmi",)], pl.Int32()),
        ("occurrenceCount", [("occurrenceCount",)], pl.Int32()),
        ("name", [("name",)], pl.String()),
        ("description", [("description",)], pl.String()),
    ]),
]


def flatten(records: pl.DataFrame) -> Frames:
    """``main``, ``can_variables`` and ``can_faults`` of decoded RAW records."""
    schema = records.schema
    main = records.select(
        *kafka_columns(schema), *[get(schema, paths, t).alias(n) for n, paths, t in MAIN]
    )
    ident = get(schema, [("machineId",)], pl.String()).alias("machineId")
    long = {name: long_frame(records, column, ident, spec) for name, column, spec in LONG}
    return Frames(main=main, long=long)


def empty_frames(schemas: Iterable[str]) -> Frames:
    """Typed, zero-row frames with every column ``flatten`` gives for these writer schemas."""
    return flatten(empty_records(schemas))
