"""The archiver: topic -> Delta tables, exactly once.

Each batch: recover (rows a crash left above ``main``'s watermarks), plan from the stored
watermarks, read the planned offsets, write the long frames, errors and gaps, then commit
``main`` with every partition's new watermark. A conflict stops the run with
:class:`ArchiveConflictError` after a reload shows who moved the watermarks; the batch read
is dropped, never re-appended.
"""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import polars as pl

from .._pipeline import RecordConsumer
from ..errors import ArchiveConflictError
from . import _layout as L
from . import _source
from ._plan import Batch, gaps_frame, late_gaps, plan_batch
from ._store import Store, with_added

if TYPE_CHECKING:
    from .._connection import Connection
    from ..window import Window

log = logging.getLogger("tu_analytics.archive")
Say = Callable[[str], None]
#: Conflicts that leave the watermarks where they were (e.g. a concurrent compaction) are
#: re-planned this often before the run gives up.
RETRIES = 2


@dataclass
class _Step:
    """One batch read and not yet committed."""

    batch: Batch
    win: Window
    planned: dict[L.Key, int | None]
    new: dict[L.Key, int]


@dataclass
class RunResult:
    """What one ``archive run`` did."""

    batches: int = 0
    records: int = 0
    errors: int = 0
    gaps: list[tuple[int, int, int]] = field(default_factory=list)
    watermarks: dict[int | str, int] = field(default_factory=dict)


class Archiver:
    """Archives ``conn``'s topic into ``uri``. ``stop()`` (or SIGTERM/Ctrl-C under
    :meth:`signals`) ends the run after the current commit."""

    def __init__(self, conn: Connection, uri: str, *, max_records: int | None = 200_000,
                 storage_options: dict[str, str] | None = None, say: Say | None = None) -> None:
        self.conn, self.uri, self.max_records = conn, uri, max_records
        self.storage_options = storage_options
        self.say: Say = say or (lambda m: log.info("%s", m))
        self._stop = threading.Event()
        self._store: Store | None = None
        #: Called after the other tables are written, before ``main``'s commit (tests).
        self.before_main: Callable[[], None] | None = None
        self._planned: dict[L.Key, int | None] = {}
        self._watch: RecordConsumer | None = None  # asks the watermarks, run-long

    def stop(self) -> None:
        self._stop.set()

    @contextmanager
    def signals(self) -> Iterator[None]:
        """SIGTERM and SIGINT stop the run after the current commit (main thread only)."""
        old = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}

        def handler(signum: int, frame: Any) -> None:
            self.say("stopping after the current commit")
            self.stop()

        for s in old:
            signal.signal(s, handler)
        try:
            yield
        finally:
            for s, h in old.items():
                signal.signal(s, h)

    def run(self, *, once: bool = True, every: float = 60.0) -> RunResult:
        """``once``: archive up to the end offsets taken now, then return. Otherwise follow the
        topic, a commit every ``every`` seconds or ``max_records`` records, until stopped."""
        result = RunResult()
        try:
            targets = {p: hi for p, (_, hi) in self._marks().items()} if once else None
            while not self._stop.is_set():
                self._catch_up(targets, result)
                if once:
                    break
                self._stop.wait(every)
        finally:
            if self._watch is not None:
                self._watch.close()
                self._watch = None
        return result

    def _marks(self) -> dict[int, tuple[int, int]]:
        if self._watch is None:
            self._watch = self.conn._open(self.conn.settings)
        return _source.marks(self.conn, consumer=self._watch)

    def _catch_up(self, targets: dict[int, int] | None, result: RunResult) -> None:
        tries = 0
        while not self._stop.is_set():
            try:
                self._pipeline(targets, result)
                return
            except ArchiveConflictError:
                tries += 1
                if tries > RETRIES or self._moved():
                    raise
                self.say("commit conflict with unchanged watermarks; reloading and re-planning")

    def _pipeline(self, targets: dict[int, int] | None, result: RunResult) -> None:
        """Batch N is written (on a thread) while batch N+1 is read; N+1 is planned from N's
        new watermarks and committed only after N's commit succeeded (the store checks that
        the stored watermarks are the planned ones), so order and fencing are unchanged."""
        pending: Future[None] | None = None
        ahead: dict[L.Key, int | None] | None = None
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="tu-archive-write") as pool:
            try:
                while not self._stop.is_set():
                    step = self._read_batch(targets, ahead)
                    if pending is not None:
                        pending.result()  # N committed before N+1 may commit
                        pending = None
                    if step is None or self._stop.is_set():
                        return  # stopped: the batch read meanwhile is dropped, not committed
                    pending = pool.submit(self._write, step, result)
                    ahead = {**step.planned, **step.new}
            finally:
                if pending is not None:
                    pending.result()

    def _moved(self) -> bool:
        """After a conflict: did someone else advance the watermarks this run planned from?"""
        store = self._store
        if store is None or not self._planned:
            return False
        _, now = store.committed()
        return any(now.get(k) != v for k, v in self._planned.items())

    def _read_batch(self, targets: dict[int, int] | None,
                    ahead: dict[L.Key, int | None] | None) -> _Step | None:
        """Plan from the stored watermarks (after recovery) or, while a commit is in
        flight, from the watermarks it will store; then read the planned offsets."""
        marks = self._marks()
        store = self._open()
        keys: list[L.Key] = sorted(marks)
        if ahead is None:
            if L.BACKFILL in store.keys(store.load(L.MAIN)):
                keys.append(L.BACKFILL)
            store.recover(keys, self.say)
            _, wm = store.committed()
        else:
            wm = ahead
            keys += [L.BACKFILL] if L.BACKFILL in ahead else []
        planned = {k: wm.get(k) for k in keys}
        batch = plan_batch({p: wm.get(p) for p in marks}, marks, targets or {}, self.max_records)
        if batch.count == 0 and not batch.gaps and self._settled(wm, batch):
            return None
        win = self._read([r for r in batch.ranges if r.end > r.start])
        first = _first_offsets(win)
        late_gaps(batch, first, {p: lo for p, (lo, _) in self._marks().items()})
        for g in batch.gaps:
            self.say(f"RETENTION GAP: partition {g.partition} offsets [{g.start}, {g.end}) were "
                     "deleted by the topic's retention before they were archived")
        return _Step(batch, win, planned, batch.new_watermarks())

    def _write(self, step: _Step, result: RunResult) -> None:
        store = self._open()
        self._planned = step.planned
        store.commit(_frames(step.win, step.batch), step.planned, step.new, self.before_main)
        self._tally(result, step.win, step.batch)

    def _read(self, ranges: list[_source.Range]) -> Window:
        """Exactly the batch's offsets, decoded (``tu_analytics.spark.archive`` reads them
        in Spark tasks instead)."""
        return _source.read(self.conn, ranges)

    def _settled(self, wm: dict[L.Key, int | None], batch: Batch) -> bool:
        # Nothing to read, and every partition's watermark is stored (a new or empty
        # partition gets its first watermark through one empty commit).
        return all(wm.get(r.partition) == r.end for r in batch.ranges)

    def _open(self) -> Store:
        if self._store is None:
            frames = _source.frames_for(self.conn, [])
            fmt = "insights" if "MachineId" in frames.main.columns else "raw"
            tables = {L.MAIN: frames.main, **frames.long, L.ERRORS: _errors_schema()}
            self._store = Store.create_or_open(self.uri, self.conn.settings.topic, fmt, tables,
                                               self.storage_options)
        return self._store

    def _tally(self, result: RunResult, win: Window, batch: Batch) -> None:
        result.batches += 1
        result.records += win.main.height
        result.errors += win.errors.height
        result.gaps += [(g.partition, g.start, g.end) for g in batch.gaps]
        result.watermarks.update(batch.new_watermarks())
        self.say(f"archived {win.main.height:,} records ({win.errors.height} errors); "
                 f"watermarks {dict(sorted(batch.new_watermarks().items()))}")


def _frames(win: Window, batch: Batch) -> dict[str, pl.DataFrame]:
    frames = {L.MAIN: win.main, **win.long, L.ERRORS: win.errors}
    out = {name: with_added(df, "kafka") for name, df in frames.items()}
    out[L.GAPS] = gaps_frame(batch.gaps)
    return out


def _first_offsets(win: Window) -> dict[int, int]:
    both = pl.concat([win.main.select("partition", "offset"),
                      win.errors.select("partition", "offset")])
    agg = both.group_by("partition").agg(pl.col("offset").min())
    return dict(zip(agg["partition"].to_list(), agg["offset"].to_list(), strict=True))


def _errors_schema() -> pl.DataFrame:
    from .._decode import ERRORS_SCHEMA

    return pl.DataFrame(schema=ERRORS_SCHEMA)


def archive(conn: Connection, uri: str, *, once: bool = True, every: float = 60.0,
            max_records: int | None = 200_000, storage_options: dict[str, str] | None = None,
            say: Say | None = None) -> RunResult:
    """Archive ``conn``'s topic into Delta tables under ``uri`` (see :class:`Archiver`)."""
    arch = Archiver(conn, uri, max_records=max_records, storage_options=storage_options,
                    say=say)
    return arch.run(once=once, every=every)
