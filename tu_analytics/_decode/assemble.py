"""Decoded pieces -> one records frame: dtypes merged over schema versions, input order."""

from __future__ import annotations

from collections.abc import Mapping

import polars as pl
from polars.datatypes import DataTypeClass

from .headers import ERRORS_SCHEMA, KAFKA_COLUMNS

__all__ = ["ROW", "as_dtype", "assemble", "conform", "errors_frame", "materialized",
           "merged_dtypes", "shape", "struct_fields"]

ROW = "__tu_row"


def as_dtype(dtype: pl.DataType | DataTypeClass) -> pl.DataType:
    """A dtype instance (Polars hands out classes such as ``pl.Int32`` in nested types)."""
    return dtype() if isinstance(dtype, DataTypeClass) else dtype


def struct_fields(dtype: pl.DataType) -> dict[str, pl.DataType]:
    """A struct dtype's fields by name; empty for anything else."""
    return {f.name: as_dtype(f.dtype) for f in dtype.fields} if isinstance(dtype, pl.Struct) else {}


def merged_dtypes(all_dtypes: list[dict[str, pl.DataType]]) -> dict[str, pl.DataType]:
    merged: dict[str, pl.DataType] = {}
    for dtypes in all_dtypes:
        for name, t in dtypes.items():
            merged[name] = _merge(merged[name], t) if name in merged else t
    return merged


def _merge(a: pl.DataType, b: pl.DataType) -> pl.DataType:
    """A dtype both can be conformed to (schema evolution: added struct fields, promotions)."""
    if a == b:
        return a
    if isinstance(a, pl.Struct) and isinstance(b, pl.Struct):
        fa, fb = struct_fields(a), struct_fields(b)
        merged = {**fb, **fa}
        return pl.Struct({n: _merge(fa[n], fb[n]) if n in fa and n in fb else merged[n]
                          for n in [*fa, *(n for n in fb if n not in fa)]})
    if isinstance(a, pl.List) and isinstance(b, pl.List):
        return pl.List(_merge(as_dtype(a.inner), as_dtype(b.inner)))
    if a == pl.Null():
        return b
    if b == pl.Null():
        return a
    # A union widened between versions (["null","double"] -> ["null","double","string"]).
    if isinstance(a, pl.Struct) and _branch_for(a, b) is not None:
        return a
    if isinstance(b, pl.Struct) and _branch_for(b, a) is not None:
        return b
    # A plain ``long`` of epoch ms in one version, ``timestamp-*`` in another: the datetime.
    if isinstance(a, pl.Datetime) and b.is_integer():
        return a
    if isinstance(b, pl.Datetime) and a.is_integer():
        return b
    if a.is_numeric() and b.is_numeric():
        return pl.Float64() if a.is_float() or b.is_float() else pl.Int64()
    return pl.String()


def _branch_for(union: pl.Struct, scalar: pl.DataType) -> str | None:
    """The branch of a multi-branch union's struct that a scalar column's values belong to."""
    if isinstance(scalar, (pl.Struct, pl.List)):
        return None
    return next((n for n, t in struct_fields(union).items() if t == scalar), None)


def conform(e: pl.Expr, have: pl.DataType, want: pl.DataType) -> pl.Expr:
    """Reshape a column to a merged dtype by field name (a plain cast matches by position)."""
    if have == want:
        return e
    branch = _branch_for(want, have) if isinstance(want, pl.Struct) else None
    if branch is not None:
        parts = [(e if n == branch else pl.lit(None, dtype=t)).alias(n)
                 for n, t in struct_fields(want).items()]
        return pl.when(e.is_null()).then(None).otherwise(pl.struct(parts))
    if isinstance(have, pl.Struct) and isinstance(want, pl.Struct):
        fields = struct_fields(have)
        parts = [(conform(e.struct.field(n), fields[n], t) if n in fields
                  else pl.lit(None, dtype=t)).alias(n) for n, t in struct_fields(want).items()]
        return pl.when(e.is_null()).then(None).otherwise(pl.struct(parts))
    if isinstance(have, pl.List) and isinstance(want, pl.List):
        return e.list.eval(conform(pl.element(), as_dtype(have.inner), as_dtype(want.inner)))
    return e.cast(want)


def shape(piece: pl.DataFrame, cols: Mapping[str, pl.DataType]) -> pl.DataFrame:
    have = piece.schema
    if dict(have) == dict(cols):
        return piece.select(list(cols))
    return piece.select(conform(pl.col(c), have[c], t).alias(c) if c in have
                        else pl.lit(None, dtype=t).alias(c) for c, t in cols.items())


def materialized(df: pl.DataFrame) -> pl.DataFrame:
    """``df`` with every column a plain series. An all-null column can be held as one scalar,
    and ``concat`` merges consecutive ones into a single chunk; columns chunked unlike the
    others then make every later ``select`` copy the whole frame to realign them."""
    return pl.DataFrame(df.get_columns())


def assemble(records: pl.DataFrame, sids: pl.Series, pieces: list[pl.DataFrame],
              dtypes: Mapping[str, pl.DataType], *, uniform: bool = False) -> pl.DataFrame:
    cols = {ROW: pl.UInt32(), **dtypes}
    shaped = [materialized(p.select(list(cols)) if uniform else shape(p, cols))
              for p in pieces if p.height]
    body = pl.concat(shaped) if shaped else pl.DataFrame(schema=cols)
    if not body[ROW].is_sorted():
        body = body.sort(ROW)
    rows = body[ROW]
    kafka = records.select(*KAFKA_COLUMNS).with_columns(schema_id=sids, key=records["key"])
    return pl.concat([kafka[rows], body.drop(ROW)], how="horizontal")


def errors_frame(records: pl.DataFrame, sids: pl.Series, reasons: pl.Series) -> pl.DataFrame:
    return (
        records.with_columns(schema_id=sids, reason=reasons)
        .filter(pl.col("reason").is_not_null())
        .select(list(ERRORS_SCHEMA))
        .cast(dict(ERRORS_SCHEMA))  # type: ignore[arg-type]
    )
