"""Reading an archive back: ``scan_archive`` (a Polars LazyFrame) and ``archive_status``."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import date, datetime, timedelta
from typing import TYPE_CHECKING, Any

import polars as pl

from .._timespec import parse_time
from . import _layout as L
from ._store import Store

if TYPE_CHECKING:
    from .._connection import Connection


def scan_archive(
    uri: str,
    start: datetime | str | None = None,
    end: datetime | str | None = None,
    *,
    machines: str | Iterable[str] | None = None,
    columns: Sequence[str] | None = None,
    table: str = "main",
    storage_options: dict[str, str] | None = None,
) -> pl.LazyFrame:
    """The archive's ``table`` (``main``, a long frame, ``errors``) as a LazyFrame: records
    received in ``[start, end)``, of ``machines``, with ``columns``.

    Partitions are pruned on ``kafka_date``; filters and the projection are pushed into the
    Parquet scan. Rows that ``main``'s commit does not cover (left by a crash) are left out.
    Timestamps read as milliseconds (UTC), as in a window."""
    store = Store.open(uri, storage_options=storage_options)
    if table not in (L.MAIN, *store.tables):
        raise ValueError(f"no table {table!r} in the archive; have: "
                         f"{', '.join([L.MAIN, *store.tables])}")
    dt = store.load(table)
    lf = pl.scan_delta(dt)
    lf = lf.filter(_range(start, end))
    if table != L.MAIN:
        _, wm = store.committed()
        lf = lf.filter(L.visible(wm, table))
    if machines is not None:
        wanted = [machines] if isinstance(machines, str) else list(machines)
        id_col = "MachineId" if store.identity.format == "insights" else "machineId"
        lf = lf.filter(pl.col(id_col).is_in(wanted))
    if columns is not None:
        lf = lf.select(list(columns))
    return lf.with_columns(_ms_times(lf.collect_schema()))


def _range(start: datetime | str | None, end: datetime | str | None) -> pl.Expr:
    cond = pl.lit(True)
    if start is not None:
        a = parse_time(start)
        cond = cond & (pl.col(L.DATE_COL) >= a.date()) & (pl.col("kafka_timestamp") >= a)
    if end is not None:
        b = parse_time(end)
        # The date filter prunes partitions; the timestamp filter is exact.
        cond = cond & (pl.col(L.DATE_COL) <= _last_day(b)) & (pl.col("kafka_timestamp") < b)
    return cond


def _last_day(b: datetime) -> date:
    return (b - timedelta(microseconds=1)).date()  # end is exclusive


def _ms_times(schema: pl.Schema) -> list[pl.Expr]:
    return [pl.col(c).cast(pl.Datetime("ms", t.time_zone)) for c, t in schema.items()
            if isinstance(t, pl.Datetime) and t.time_unit != "ms"]


def archive_status(uri: str, connection: Connection | None = None, *, kafka: bool = True,
                   storage_options: dict[str, str] | None = None,
                   **connect_kwargs: Any) -> dict[str, Any]:
    """Where the archive stands: ``partitions`` ({partition, watermark, low, high, lag}),
    ``gaps`` ({partition, start, end}), ``rows``, ``first``, ``last`` (ISO 8601 UTC),
    ``schema_ids``, ``topic``, ``archive_id``. ``low``/``high``/``lag`` come from the topic
    (``connection``, or ``connect(**connect_kwargs)``); null with ``kafka=False``."""
    store = Store.open(uri, storage_options=storage_options)
    main, wm = store.committed()
    marks: dict[int, tuple[int, int]] = {}
    if kafka:
        from .._connection import connect
        from . import _source

        conn = connection or connect(**connect_kwargs)
        store_topic = store.identity.topic
        if conn.settings.topic != store_topic:
            from ..errors import ArchiveError

            raise ArchiveError(f"the archive at {uri} belongs to topic {store_topic!r}, the "
                               f"connection reads {conn.settings.topic!r}", uri=uri)
        marks = _source.marks(conn)
    parts = sorted({*(k for k in wm if isinstance(k, int)), *marks})
    stats = pl.scan_delta(main).select(
        pl.len().alias("rows"), pl.col("kafka_timestamp").min().alias("first"),
        pl.col("kafka_timestamp").max().alias("last"),
        pl.col("schema_id").drop_nulls().unique().sort().implode().alias("ids"),
    ).collect().row(0, named=True)
    gaps = scan_archive(uri, table=L.GAPS, storage_options=storage_options).sort(
        "partition", "start").collect()
    return {
        "topic": store.identity.topic,
        "archive_id": store.identity.archive_id,
        "partitions": [_partition(p, wm.get(p), marks.get(p)) for p in parts],
        "gaps": gaps.select("partition", "start", "end").to_dicts(),
        "rows": int(stats["rows"]),
        "first": _iso(stats["first"]),
        "last": _iso(stats["last"]),
        "schema_ids": [int(i) for i in stats["ids"]],
        "backfill_until": (L.day_of(wm[L.BACKFILL]).isoformat()  # type: ignore[arg-type]
                           if wm.get(L.BACKFILL) is not None else None),
    }


def _partition(p: int, watermark: int | None, mark: tuple[int, int] | None) -> dict[str, Any]:
    low, high = mark if mark is not None else (None, None)
    lag = None
    if high is not None:
        lag = max(0, high - max(watermark if watermark is not None else 0, low or 0))
    return {"partition": p, "watermark": watermark, "low": low, "high": high, "lag": lag}


def _iso(ts: datetime | None) -> str | None:
    if ts is None:
        return None
    return ts.isoformat().replace("+00:00", "Z")
