"""``history()``: one Window over the archive and the topic.

Per partition, rows below the archive's watermark come from the archive and the rest from
the topic. The window planner's offsets bound both sides, so where the two overlap the
result equals ``conn.window(start, end)``: same rows, columns, dtypes and order.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING

import polars as pl

from .._timespec import resolve_range
from ..window import Window, WindowSpec
from . import _layout as L
from . import _source
from ._source import Range
from ._store import Store

if TYPE_CHECKING:
    from .._connection import Connection


def history(conn: Connection, start: datetime | str | None = None,
            end: datetime | str | None = None, *, archive: str,
            last: str | timedelta | None = None, machines: str | Iterable[str] | None = None,
            storage_options: dict[str, str] | None = None) -> Window:
    """Every record received in ``[start, end)``, from the archive at ``archive`` and the
    topic, as one :class:`Window` (see ``Connection.history``)."""
    begin, stop = resolve_range(start, end, last)
    start_ms, end_ms = _ms(begin), _ms(stop)
    store = Store.open(archive, topic=conn.settings.topic, storage_options=storage_options)
    _, wm = store.committed()
    ranges = _source.plan(conn, start_ms, end_ms)
    rest = [Range(r.partition, max(r.start, min(_wm(wm, r.partition), r.end)), r.end, r.low)
            for r in ranges]
    topic = _source.read(conn, rest, start_ms, end_ms)
    bound = _bounds(ranges, wm)
    old = {name: _archived(store, name, begin, stop, bound, wm)
           for name in [L.MAIN, *topic.long, L.ERRORS]}
    ids = sorted({*topic.spec.schema_ids, *_ids(old[L.MAIN]), *_ids(old[L.ERRORS])})
    shape = _source.frames_for(conn, ids)
    main = _join(old[L.MAIN], topic.main, shape.main.schema)
    long = {n: _join(old[n], df, shape.long[n].schema if n in shape.long else df.schema)
            for n, df in topic.long.items()}
    errors = _join(old[L.ERRORS], topic.errors, topic.errors.schema)
    wanted = None if machines is None else (
        {machines} if isinstance(machines, str) else set(machines))
    if wanted is not None:
        id_col = "MachineId" if topic.spec.format == "insights" else "machineId"
        main = main.filter(pl.col(id_col).is_in(list(wanted)))
        long = {n: df.filter(pl.col(id_col).is_in(list(wanted))) for n, df in long.items()}
    spec = WindowSpec(
        topic=conn.settings.topic, format=topic.spec.format, start=begin, end=stop,
        machines=tuple(sorted(wanted)) if wanted is not None else None,
        offsets={r.partition: (r.start, r.end) for r in ranges}, schema_ids=tuple(ids),
        created=datetime.now(UTC), records=main.height, errors=errors.height,
        bootstrap_servers=conn.settings.bootstrap_servers,
    )
    return Window(spec=spec, main=main, errors=errors, units=topic.units, long=long)


def _wm(wm: dict[L.Key, int | None], p: int) -> int:
    v = wm.get(p)
    return -1 if v is None else v


def _bounds(ranges: list[Range], wm: dict[L.Key, int | None]) -> pl.Expr:
    """Archived Kafka rows inside the planner's offsets and below the watermark. A range
    that starts at the low watermark may reach further back than the topic still holds."""
    cond = pl.lit(False)
    for r in ranges:
        top = min(_wm(wm, r.partition), r.end)
        if top <= 0:
            continue
        c = (pl.col("partition") == r.partition) & (pl.col("offset") < top)
        if r.start > r.low:
            c = c & (pl.col("offset") >= r.start)
        cond = cond | c
    return pl.col("partition").is_null() | cond


def _archived(store: Store, name: str, begin: datetime, stop: datetime, bound: pl.Expr,
              wm: dict[L.Key, int | None]) -> pl.DataFrame:
    lf = pl.scan_delta(store.load(name)).filter(
        (pl.col(L.DATE_COL) >= begin.date())
        & (pl.col(L.DATE_COL) <= (stop - timedelta(microseconds=1)).date())
        & (pl.col("kafka_timestamp") >= begin) & (pl.col("kafka_timestamp") < stop) & bound)
    if name != L.MAIN:
        lf = lf.filter(L.visible(wm, name))
    return lf.drop(*L.ADDED, strict=False).collect()


def _ids(df: pl.DataFrame) -> list[int]:
    return [int(i) for i in df["schema_id"].drop_nulls().unique().to_list()]


def _join(old: pl.DataFrame, new: pl.DataFrame, schema: pl.Schema) -> pl.DataFrame:
    """Archived and topic rows with the window's columns and dtypes, in the window's order
    (backfilled rows, which have no partition, first by time)."""
    parts = [_shape(df, schema) for df in (old, new) if df.height]
    if not parts:
        return pl.DataFrame(schema=schema)
    df = pl.concat(parts)
    return df.sort(["partition", "offset", "kafka_timestamp"], nulls_last=False,
                   maintain_order=True)


def _shape(df: pl.DataFrame, schema: pl.Schema) -> pl.DataFrame:
    return df.select([
        pl.col(c).cast(t) if c in df.columns else pl.lit(None, dtype=t).alias(c)
        for c, t in schema.items()
    ])


def _ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)
