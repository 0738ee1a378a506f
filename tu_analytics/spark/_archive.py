"""The Delta archive written from Spark: the archive package's own archiver, reading in tasks.

Planning, recovery, retention gaps and the commit are :class:`tu_analytics.archive.Archiver`'s,
unchanged: the driver plans each batch from the stored watermarks (app ids
``tu-archive/<archive_id>/<topic>/<partition>``), and commits the batch with every partition's
new watermark in ``main``'s one commit. Only the read moves: the batch's offset ranges are cut
into pieces of at most ``max_records_per_task`` offsets, each Spark task reads and decodes one
piece with the project's own reader (failing, so Spark retries it, unless the consumer reached
the piece's end), and returns its frames as Arrow IPC. The driver concatenates them in offset
order into the batch's window. A batch is at most ``max_records`` records, so that is all the
driver ever holds, as for the Python archiver. Both write the same archive, and each resumes
the other's.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import polars as pl

from .. import _pipeline
from ..archive import _source
from ..archive.writer import Archiver, RunResult, Say
from ..formats import Format
from ..formats import machine_insights as mi
from ..window import Window, WindowSpec
from ._features import arrow_udfs
from ._plan import DEFAULT_MAX_RECORDS_PER_TASK, as_options, settings_from, split

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import SparkSession

    from .._connection import Connection

#: One row per (piece, frame): the frame's rows as Arrow IPC, and the piece's schema ids.
_OUT = "frame string, partition int, start long, ids array<int>, data binary"
_MAIN, _ERRORS = "main", "errors"


@dataclass(frozen=True)
class _ReadPieces:
    """The tasks' function: read each piece of the input rows (picklable; ``settings`` holds
    clear-text secrets, so it travels only in the pickled function, never in a plan string)."""

    settings: dict[str, str]
    stall_timeout: float

    def __call__(self, batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from .._connection import Connection

        conn = Connection(settings_from(self.settings))
        for batch in batches:
            for p in batch.to_pylist():
                piece = _source.Range(p["partition"], p["start"], p["end"], p["low"])
                win = _source.read(conn, [piece], stall_timeout=self.stall_timeout)
                yield _rows(win, piece)


def _rows(win: Window, piece: _source.Range) -> pa.RecordBatch:
    import pyarrow as pa

    frames = {_MAIN: win.main, _ERRORS: win.errors, **win.long}
    ids = list(win.spec.schema_ids)
    return pa.RecordBatch.from_pydict({
        "frame": list(frames), "partition": [piece.partition] * len(frames),
        "start": [piece.start] * len(frames), "ids": [ids] * len(frames),
        "data": [_ipc(df) for df in frames.values()],
    }, schema=pa.schema([("frame", pa.string()), ("partition", pa.int32()),
                         ("start", pa.int64()), ("ids", pa.list_(pa.int32())),
                         ("data", pa.binary())]))


def _ipc(df: pl.DataFrame) -> bytes:
    out = io.BytesIO()
    df.write_ipc(out)
    return out.getvalue()


class SparkArchiver(Archiver):
    """An :class:`~tu_analytics.archive.Archiver` whose batches are read by Spark tasks."""

    def __init__(self, spark: SparkSession, conn: Connection, uri: str, *,
                 max_records: int | None = 200_000,
                 max_records_per_task: int = DEFAULT_MAX_RECORDS_PER_TASK,
                 storage_options: dict[str, str] | None = None, say: Say | None = None,
                 stall_timeout: float = 30.0) -> None:
        super().__init__(conn, uri, max_records=max_records, storage_options=storage_options,
                         say=say)
        self.spark, self.per_task, self.stall_timeout = spark, max_records_per_task, stall_timeout

    def _read(self, ranges: list[_source.Range]) -> Window:
        planned = [_pipeline.PartitionRange(r.partition, r.start, r.end, r.low) for r in ranges]
        pieces = [(t.partition, t.start, t.end, t.low) for t in split(planned, self.per_task)]
        if not pieces:
            return _source.read(self.conn, [])
        df = self.spark.createDataFrame(
            pieces, "partition int, start long, end long, low long").repartition(len(pieces))
        task = _ReadPieces(as_options(self.conn.settings), self.stall_timeout)
        with arrow_udfs():
            rows = df.mapInArrow(task, _OUT).toArrow().to_pylist()
        return _assemble(self.conn, ranges, rows)


def _assemble(conn: Connection, ranges: list[_source.Range], rows: list[dict[str, Any]]
              ) -> Window:
    """The batch's window from the pieces' frames, in (partition, offset) order, with the
    columns a single read of every piece would give (those of all their schema ids)."""
    rows.sort(key=lambda r: (r["partition"], r["start"]))
    ids = sorted({i for r in rows for i in r["ids"]})
    template = _source.frames_for(conn, ids)
    shapes = {_MAIN: template.main, **template.long}
    parts: dict[str, list[pl.DataFrame]] = {}
    for r in rows:
        part = pl.read_ipc(io.BytesIO(r["data"]))
        if part.height:  # an empty piece's frames have the latest schema's columns: skip
            parts.setdefault(r["frame"], []).append(part)
    frames = {name: pl.concat([shape, *parts.get(name, [])], how="diagonal_relaxed")
              for name, shape in shapes.items()}
    errors = pl.concat(parts.get(_ERRORS, []) or [_errors_frame()], how="diagonal_relaxed")
    main = frames.pop(_MAIN)
    fmt: Format = "insights" if "MachineId" in main.columns else "raw"
    spec = WindowSpec(
        topic=conn.settings.topic, format=fmt, start=datetime.fromtimestamp(0, UTC),
        end=datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC), machines=None,
        offsets={r.partition: (r.start, r.end) for r in ranges}, schema_ids=tuple(ids),
        created=datetime.now(UTC), records=main.height, errors=errors.height,
        bootstrap_servers=conn.settings.bootstrap_servers)
    return Window(spec=spec, main=main, errors=errors, units=mi.empty_units(), long=frames)


def _errors_frame() -> pl.DataFrame:
    from .._decode import ERRORS_SCHEMA

    return pl.DataFrame(schema=ERRORS_SCHEMA)


def archive(spark: SparkSession, conn: Connection, uri: str, *, once: bool = True,
            every: float = 60.0, max_records: int | None = 200_000,
            max_records_per_task: int = DEFAULT_MAX_RECORDS_PER_TASK,
            storage_options: dict[str, str] | None = None, say: Say | None = None) -> RunResult:
    """Archive ``conn``'s topic into the Delta archive at ``uri`` as ``conn.archive`` does
    (same tables, same watermarks, one commit per batch), reading each batch in Spark tasks
    of at most ``max_records_per_task`` offsets. The archive can be resumed by either."""
    arch = SparkArchiver(spark, conn, uri, max_records=max_records,
                         max_records_per_task=max_records_per_task,
                         storage_options=storage_options, say=say)
    return arch.run(once=once, every=every)
