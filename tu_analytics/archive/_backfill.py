"""Backfill: simulated days older than the topic's retention, straight into an archive.

Used by ``tu-analytics sandbox up --archive-backfill-days N``. Records are encoded by the
simulator as the platform would publish them, decoded by the library's own decoder and
written by the archiver's own store, one UTC day per commit, exactly once: the ``backfill``
watermark (the epoch day of the next day to write) is committed with each day's rows, so a
rerun resumes where the last one stopped. Rows have null ``partition``/``offset`` and
``source`` = ``backfill``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime, time, timedelta
from typing import TYPE_CHECKING, Any

import polars as pl

from . import _layout as L
from . import _source
from ._store import Store, with_added

if TYPE_CHECKING:
    from .._connection import Connection


def backfill(conn: Connection, simulator: Any, uri: str, *, start: datetime, end: datetime,
             customer: str, schema_ids: Mapping[tuple[str, int], int] | None = None,
             storage_options: dict[str, str] | None = None,
             say: Callable[[str], None] | None = None) -> int:
    """Write the records ``simulator`` (a ``sandbox.simulator.Simulator``) gives for
    ``customer`` and ``conn``'s format, received in ``[start, end)``, into the archive at
    ``uri``; ``schema_ids`` maps (format, version) to registry ids (the sandbox state's;
    by default the versions of the topic's subject). Days already backfilled are skipped.
    Returns the number of records written."""
    frames = _source.frames_for(conn, [])
    fmt = "insights" if "MachineId" in frames.main.columns else "raw"
    from .._decode import ERRORS_SCHEMA

    store = Store.create_or_open(
        uri, conn.settings.topic, fmt,
        {L.MAIN: frames.main, **frames.long, L.ERRORS: pl.DataFrame(schema=ERRORS_SCHEMA)},
        storage_options)
    store.recover([L.BACKFILL], say or (lambda m: None))
    if schema_ids is None:
        schema_ids = _source.subject_ids(conn, fmt)
    written = 0
    day = start.astimezone(UTC).date()
    while datetime.combine(day, time(), UTC) < end:
        a = max(start, datetime.combine(day, time(), UTC))
        b = min(end, datetime.combine(day + timedelta(days=1), time(), UTC))
        _, wm = store.committed()
        done = wm.get(L.BACKFILL)
        if done is None or L.day_number(day) >= done:
            written += _one_day(conn, simulator, store, a, b, customer, fmt, schema_ids, done)
            if say:
                say(f"backfilled {day.isoformat()}: {written:,} records so far")
        day += timedelta(days=1)
    return written


def _one_day(conn: Connection, simulator: Any, store: Store, a: datetime, b: datetime,
             customer: str, fmt: str, schema_ids: Mapping[tuple[str, int], int],
             done: int | None) -> int:
    keys: list[bytes] = []
    values: list[bytes] = []
    stamps: list[int] = []
    for batch in simulator.encoded_batches(a, b, schema_ids, formats=[fmt]):
        for key, value, ts, owner, _ in batch:
            if owner == customer:
                keys.append(key)
                values.append(value)
                stamps.append(ts)
    records = pl.DataFrame({
        "partition": pl.Series([None] * len(keys), dtype=pl.Int32),
        "offset": pl.Series([None] * len(keys), dtype=pl.Int64),
        "kafka_timestamp": pl.Series(stamps, dtype=pl.Int64).cast(pl.Datetime("ms", "UTC")),
        "key": pl.Series(keys, dtype=pl.Binary),
        "value": pl.Series(values, dtype=pl.Binary),
    })
    win = _source.decode(conn, records)
    frames = {name: with_added(df, "backfill")
              for name, df in {L.MAIN: win.main, **win.long, L.ERRORS: win.errors}.items()}
    nxt = L.day_number(a.date()) + 1
    store.commit(frames, {L.BACKFILL: done}, {L.BACKFILL: nxt})
    return win.main.height
