"""Kafka columns, the errors frame, and the Confluent header of each value (vectorised)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final

import polars as pl

from .._avro import HEADER_SIZE, MAGIC

__all__ = ["CORRUPT", "ERRORS_SCHEMA", "KAFKA_COLUMNS", "KAFKA_SCHEMA", "header_reasons",
           "schema_ids", "split_header"]

KAFKA_COLUMNS: Final = ("partition", "offset", "kafka_timestamp")
KAFKA_SCHEMA: Final = pl.Schema({
    "partition": pl.Int32(),
    "offset": pl.Int64(),
    "kafka_timestamp": pl.Datetime("ms", "UTC"),
})
ERRORS_SCHEMA: Final = pl.Schema({
    **KAFKA_SCHEMA,
    "schema_id": pl.Int32(),
    "reason": pl.String(),
    "key": pl.Binary(),
    "value": pl.Binary(),
})
CORRUPT: Final = "truncated or corrupt Avro body"


def split_header(values: pl.Series) -> pl.DataFrame:
    """Per value: ``magic`` (UInt8, first byte), ``schema_id`` (Int32, null unless the value
    is Confluent-framed: at least 5 bytes starting with 0x00) and ``size`` (bytes)."""
    framed = pl.col("v").bin.size() >= HEADER_SIZE
    return pl.DataFrame({"v": values}).select(
        pl.col("v").bin.slice(0, 1).bin.reinterpret(dtype=pl.UInt8).alias("magic"),
        pl.when(framed & (pl.col("v").bin.slice(0, 1) == bytes((MAGIC,))))
        .then(pl.col("v").bin.slice(1, 4).bin.reinterpret(dtype=pl.Int32, endianness="big"))
        .alias("schema_id"),
        pl.col("v").bin.size().cast(pl.Int64).alias("size"),
    )


def schema_ids(values: pl.Series) -> list[int]:
    """The distinct schema ids of the Confluent-framed values, sorted (for registry look-ups)."""
    ids = split_header(values)["schema_id"].drop_nulls().unique().sort()
    return [int(i) for i in ids]


def header_reasons(values: pl.Series, head: pl.DataFrame,
                    schemas: Mapping[int, str | None]) -> pl.Series:
    """Why each value cannot be decoded before its body is looked at; null when it can."""
    missing = [i for i in head["schema_id"].drop_nulls().unique() if i not in schemas]
    not_found = [i for i, s in schemas.items() if s is None]
    sid = pl.col("schema_id").cast(pl.String)
    return head.with_columns(v=values).select(
        pl.when(pl.col("size").is_null())
        .then(pl.lit("null value"))
        .when(pl.col("magic") != MAGIC)
        .then(pl.lit("bad magic byte 0x") + pl.col("v").bin.slice(0, 1).bin.encode("hex"))
        .when(pl.col("size") < HEADER_SIZE)
        .then(pl.lit("value shorter than 5 bytes (") + pl.col("size").cast(pl.String) + " bytes)")
        .when(pl.col("schema_id").is_in(not_found))
        .then(pl.lit("unknown schema id ") + sid + " (registry: not found)")
        .when(pl.col("schema_id").is_in(missing))
        .then(pl.lit("unknown schema id ") + sid + " (no schema given)")
        .alias("reason")
    ).to_series()
