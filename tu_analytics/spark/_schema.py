"""Polars frame schemas as Spark schemas, and Polars frames as Arrow batches that match them.

One mapping, used both ways: the driver turns the Polars schema that ``flatten`` gives for
every writer-schema version into a Spark ``StructType``; a task casts its Polars frame to the
same Arrow types before handing batches to Spark, so every task's batches have exactly the
columns and types Spark was promised, whatever versions its range holds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import polars as pl
from polars.datatypes import DataTypeClass

from ..errors import ConfigurationError

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql.types import DataType, StructType

#: Spark stores timestamps as microseconds since the epoch in UTC.
_SPARK_TIME = pl.Datetime("us", "UTC")


def _inst(dtype: pl.DataType | DataTypeClass) -> pl.DataType:
    return dtype if isinstance(dtype, pl.DataType) else dtype()


def _spark_type(dtype: pl.DataType | DataTypeClass) -> DataType:
    from pyspark.sql import types as t

    dtype = _inst(dtype)
    simple: dict[type[pl.DataType], Any] = {
        pl.Boolean: t.BooleanType, pl.Int8: t.ByteType, pl.Int16: t.ShortType,
        pl.Int32: t.IntegerType, pl.Int64: t.LongType, pl.UInt8: t.ShortType,
        pl.UInt16: t.IntegerType, pl.UInt32: t.LongType, pl.Float32: t.FloatType,
        pl.Float64: t.DoubleType, pl.String: t.StringType, pl.Binary: t.BinaryType,
        pl.Date: t.DateType, pl.Datetime: t.TimestampType, pl.Null: t.StringType,
        pl.Categorical: t.StringType, pl.Enum: t.StringType,
    }
    kind = type(dtype)
    if kind in simple:
        return simple[kind]()  # type: ignore[no-any-return]
    if isinstance(dtype, pl.List | pl.Array):
        return t.ArrayType(_spark_type(dtype.inner))
    if isinstance(dtype, pl.Struct):
        return t.StructType([t.StructField(f.name, _spark_type(f.dtype)) for f in dtype.fields])
    raise ConfigurationError(f"no Spark type for the Polars type {dtype}")


def spark_schema(schema: pl.Schema) -> StructType:
    """The Spark ``StructType`` of a Polars schema (every field nullable)."""
    from pyspark.sql.types import StructField, StructType

    return StructType([StructField(name, _spark_type(dt)) for name, dt in schema.items()])


def _arrow_ready(dtype: pl.DataType | DataTypeClass) -> pl.DataType:
    """The Polars type whose Arrow form Spark reads as the type ``_spark_type`` gave."""
    dtype = _inst(dtype)
    if isinstance(dtype, pl.Datetime):
        return _SPARK_TIME
    if isinstance(dtype, pl.UInt8):
        return pl.Int16()
    if isinstance(dtype, pl.UInt16):
        return pl.Int32()
    if isinstance(dtype, pl.UInt32):
        return pl.Int64()
    if isinstance(dtype, pl.Null | pl.Categorical | pl.Enum):
        return pl.String()
    if isinstance(dtype, pl.List | pl.Array):
        return pl.List(_arrow_ready(dtype.inner))
    if isinstance(dtype, pl.Struct):
        return pl.Struct([pl.Field(f.name, _arrow_ready(f.dtype)) for f in dtype.fields])
    return dtype


def conform(frame: pl.DataFrame, schema: pl.Schema) -> pl.DataFrame:
    """``frame`` with exactly ``schema``'s columns, in order and Spark-ready types: columns a
    range's writer versions lack are null, as they would be in the Polars window."""
    cols = [
        (pl.col(name) if name in frame.columns else pl.lit(None)).cast(_arrow_ready(dt)).alias(name)
        for name, dt in schema.items()
    ]
    return frame.select(cols)


def to_batches(frame: pl.DataFrame, schema: StructType,
               max_rows: int = 10_000) -> list[pa.RecordBatch]:
    """Arrow record batches of at most ``max_rows`` rows in exactly the Arrow types Spark
    expects for ``schema`` (it refuses string views, large lists or other time units)."""
    from pyspark.sql.pandas.types import to_arrow_schema

    table = frame.to_arrow(compat_level=pl.CompatLevel.oldest())
    table = table.cast(to_arrow_schema(schema, timezone="UTC"))
    return list(table.to_batches(max_chunksize=max_rows))
