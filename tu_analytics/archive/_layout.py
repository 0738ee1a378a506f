"""Names and rules of an archive's layout: tables, app ids, visibility. Pure, no I/O.

``URI/main`` holds one row per record (the columns of ``Window.main`` plus ``kafka_date``
and ``source``); each long frame and ``errors`` is a table of its own; ``gaps`` lists offset
ranges lost to retention. ``main``'s commit is the one that counts: it carries every
partition's watermark as a Delta app transaction ``tu-archive/<archive_id>/<topic>/<key>``
(key = partition number, or ``backfill``, whose version is the epoch day of the next day to
backfill). The other tables carry the same app ids; their rows above ``main``'s watermark
were left by a crash or a losing archiver: invisible to readers, removed by the next run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Final

import polars as pl

MAIN: Final = "main"
ERRORS: Final = "errors"
GAPS: Final = "gaps"
BACKFILL: Final = "backfill"
#: Every main commit bumps this app id's version, so any two commits planned from one
#: snapshot conflict (and a recovery "fence" stops an archiver that is still in flight).
COMMITS: Final = "commits"
DATE_COL: Final = "kafka_date"
SOURCE_COL: Final = "source"
#: The columns the archive adds to every data table (not part of a Window's frames).
ADDED: Final = (DATE_COL, SOURCE_COL)
GAPS_SCHEMA: Final = pl.Schema({
    "partition": pl.Int32(), "start": pl.Int64(), "end": pl.Int64(),
    "recorded": pl.Datetime("us", "UTC"),
})
EPOCH: Final = date(1970, 1, 1)

Key = int | str  # a partition number or BACKFILL


def app_id(archive_id: str, topic: str, key: Key) -> str:
    """The Delta app id of one watermark: ``tu-archive/<archive_id>/<topic>/<key>``."""
    return f"tu-archive/{archive_id}/{topic}/{key}"


def table_uri(uri: str, name: str) -> str:
    return f"{uri.rstrip('/')}/{name}"


def offset_column(table: str) -> str:
    """The column compared with the watermark to tell committed rows from orphans."""
    return "start" if table == GAPS else "offset"


@dataclass(frozen=True)
class Identity:
    """What an archive belongs to; stored as JSON in each table's description."""

    topic: str
    archive_id: str
    format: str
    tables: tuple[str, ...] = ()  # the tables besides main, in writing order

    def describe(self, table: str) -> str:
        return json.dumps({"tu_analytics_archive": 1, "table": table, "topic": self.topic,
                           "archive_id": self.archive_id, "format": self.format,
                           "tables": list(self.tables)})

    @classmethod
    def parse(cls, description: str | None) -> Identity | None:
        try:
            d = json.loads(description or "")
        except json.JSONDecodeError:
            return None
        if not isinstance(d, dict) or d.get("tu_analytics_archive") != 1:
            return None
        return cls(str(d["topic"]), str(d["archive_id"]), str(d["format"]),
                   tuple(d.get("tables", ())))


def day_of(version: int) -> date:
    return EPOCH + timedelta(days=version)


def day_number(d: date) -> int:
    return (d - EPOCH).days


def visible(watermarks: dict[Key, int | None], table: str) -> pl.Expr:
    """Rows of a non-main table that ``main``'s commit covers: Kafka rows below their
    partition's watermark, backfill rows before the backfill watermark's day."""
    col = offset_column(table)
    wms = {k: v for k, v in watermarks.items() if isinstance(k, int) and v is not None}
    below = pl.col(col) < pl.col("partition").replace_strict(
        wms, default=-1, return_dtype=pl.Int64)
    if table == GAPS:
        return below
    bf = watermarks.get(BACKFILL)
    old = pl.col("partition").is_null() & (
        pl.col(DATE_COL) < day_of(bf) if bf is not None else pl.lit(False))
    return old | (pl.col("partition").is_not_null() & below)


def orphans(key: Key, watermark: int | None, table: str) -> str:
    """A Delta delete predicate for the rows of ``key`` above ``watermark`` in ``table``."""
    if key == BACKFILL:
        if watermark is None:
            return '"partition" IS NULL'
        return f"\"partition\" IS NULL AND {DATE_COL} >= '{day_of(watermark).isoformat()}'"
    where = f'"partition" = {int(key)}'
    if watermark is None:
        return where
    return f'{where} AND "{offset_column(table)}" >= {int(watermark)}'
