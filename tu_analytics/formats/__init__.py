"""Decoded records -> the frames of docs/frames.md, one module per Streaming API format.

``machine_insights`` and ``raw`` each offer ``flatten(records) -> Frames`` (columnar Polars
expressions, no Python loop over rows) and ``empty_frames(schemas)`` for windows without
records. ``detect_format`` tells the two apart from a writer schema.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final, Literal

import polars as pl

from .._decode import as_dtype, records_schema, struct_fields

__all__ = ["KAFKA_COLUMNS", "Format", "Frames", "detect_format"]

Format = Literal["insights", "raw"]
KAFKA_COLUMNS: Final = ("partition", "offset", "kafka_timestamp", "schema_id")
KAFKA_SCHEMA: Final = pl.Schema({
    "partition": pl.Int32(),
    "offset": pl.Int64(),
    "kafka_timestamp": pl.Datetime("ms", "UTC"),
    "schema_id": pl.Int32(),
})
TS: Final = pl.Datetime("ms", "UTC")

# A path into nested structs, tried in order (a later one for older/other layouts).
Path = tuple[str, ...]


@dataclass(frozen=True)
class Frames:
    """A format's ``main`` frame (one row per record) and its ``long`` frames by name."""

    main: pl.DataFrame
    long: dict[str, pl.DataFrame] = field(default_factory=dict)


def detect_format(schema_json: str) -> Format:
    """``"insights"`` or ``"raw"``, from a writer schema's record name and fields."""
    schema = json.loads(schema_json)
    if not isinstance(schema, dict) or "fields" not in schema:
        raise ValueError("not a record schema: cannot tell its Streaming API format")
    name = str(schema.get("name", "")).lower()
    fields = {f["name"] for f in schema["fields"]}
    if "insight" in name or fields & {"Metadata", "EquipmentHeader", "FaultCodes"}:
        return "insights"
    if "raw" in name or fields & {"unitId", "canVariables", "canFaults"}:
        return "raw"
    raise ValueError(f"record {schema.get('name')!r} is neither Machine Insights nor RAW")


# -- shared column helpers (used by the format modules) ----------------------------------------


def get(schema: Mapping[str, pl.DataType], paths: Sequence[Path], dtype: pl.DataType,
        base: pl.Expr | None = None) -> pl.Expr:
    """The paths that exist (and are not structs when a scalar is wanted), coalesced in order
    and cast to ``dtype``; a typed null column when none does. ``schema`` describes ``base``'s
    fields. A path ending in ``BRANCH`` gives which branch of a union of records is set."""
    found = [e for e in (_resolve(schema, path, base) for path in paths) if e is not None]
    exprs = [e.cast(dtype) if t != dtype else e for e, t in found]
    if not exprs:
        return pl.lit(None, dtype=dtype)
    return exprs[0] if len(exprs) == 1 else pl.coalesce(exprs)


BRANCH: Final = "<branch>"


def _resolve(schema: Mapping[str, pl.DataType], path: Path,
             base: pl.Expr | None) -> tuple[pl.Expr, pl.DataType] | None:
    head, *rest = path
    if head not in schema:
        return None
    expr = pl.col(head) if base is None else base.struct.field(head)
    dtype = schema[head]
    for name in rest:
        fields = struct_fields(dtype)
        if name == BRANCH and fields and all(isinstance(t, pl.Struct) for t in fields.values()):
            # A union of records decodes to one struct field per branch, exactly one set.
            named = [pl.when(expr.struct.field(b).is_not_null()).then(pl.lit(b))
                     for b in fields]
            return pl.coalesce(named), pl.String()
        if name not in fields:
            return None
        expr, dtype = expr.struct.field(name), fields[name]
    if isinstance(dtype, (pl.Struct, pl.List)):
        return None
    return expr, dtype


def kafka_columns(schema: Mapping[str, pl.DataType]) -> list[pl.Expr]:
    return [pl.col(c).cast(t) if c in schema else pl.lit(None, dtype=t).alias(c)
            for c, t in KAFKA_SCHEMA.items()]


def long_frame(records: pl.DataFrame, column: str, ident: pl.Expr,
               spec: Sequence[tuple[str, Sequence[Path], pl.DataType]]) -> pl.DataFrame:
    """One row per element of list column ``column``: Kafka columns, ``ident``, the elements'
    fields per ``spec`` (name, paths inside the element, dtype)."""
    dtype = records.schema.get(column)
    inner = as_dtype(dtype.inner) if isinstance(dtype, pl.List) else None
    fields = struct_fields(inner) if inner is not None else {}
    head = [*kafka_columns(records.schema), ident]
    if inner is None:
        return records.select(*head, *[pl.lit(None, dtype=t).alias(n) for n, _, t in spec]
                              ).clear()
    el = pl.col(column)
    return (
        records.select(*head, el)
        .filter(el.list.len() > 0)
        .explode(column)
        .select(*[pl.col(c) for c in (*KAFKA_COLUMNS, ident.meta.output_name())],
                *[get(fields, paths, t, el).alias(n) for n, paths, t in spec])
    )


def empty_records(schemas: Iterable[str]) -> pl.DataFrame:
    """Zero decoded records with the columns ``_decode.decode`` gives for these schemas."""
    return pl.DataFrame(schema=records_schema(schemas))
