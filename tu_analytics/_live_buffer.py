"""The live tail's buffer: a consumer thread fills a bounded history and a latest-per-machine table.

Part of :mod:`tu_analytics.live` (import from there). The thread only touches the buffer, never a
widget; readers take copies under a short lock, so the pump can read at any time.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol, Self

import polars as pl

# Columns that order records in time: the receipt clock, and the measurement clocks (`*_datetime`).
_RECEIPT = "kafka_timestamp"
_ORDER = "__tu_order"
_DEFAULT_HISTORY = 50_000


class BatchSource(Protocol):
    """Where a :class:`LiveTail` gets its records; the lead's Kafka reader implements this.

    ``poll`` returns the next batch as a flattened Machine Insights ``main`` frame, or ``None``
    when nothing arrived within ``timeout`` seconds. It must honour ``timeout`` so that
    :meth:`LiveTail.stop` can join the thread. ``poll`` and ``close`` are only ever called from
    the tail's consumer thread (``close`` from :meth:`LiveTail.stop` when the thread never ran),
    so a source need not be thread-safe.
    """

    def poll(self, timeout: float) -> pl.DataFrame | None: ...

    def close(self) -> None: ...


@dataclass(frozen=True, slots=True)
class TailStats:
    """Counters of a :class:`LiveTail`, read as one consistent snapshot."""

    records: int
    """Rows received since start (including rows later trimmed from the history)."""
    batches: int
    """Non-empty batches appended."""
    records_per_s: float
    """Receive rate over the last few seconds."""
    errors: int
    """Exceptions raised by the source (the thread stops at the first; see ``LiveTail.error``)."""
    buffered: int
    """Rows currently held in the history."""
    trimmed: int
    """Rows dropped from the history to respect its cap."""
    machines: int
    """Machines in the latest-state table."""
    bad_records: int = 0
    """Records the source could not decode (kept in ``LiveTail.bad_records()``)."""


def _order_expr(columns: Sequence[str]) -> pl.Expr | None:
    """A record's own time: the newest of its measurement clocks, else its receipt time."""
    measured = [pl.col(c) for c in columns if c.endswith("_datetime")]
    clocks: list[pl.Expr] = []
    if measured:
        # Measurement first: an old record delivered late must not overwrite a newer state.
        clocks.append(pl.max_horizontal(measured))
    if _RECEIPT in columns:
        clocks.append(pl.col(_RECEIPT))
    if not clocks:
        return None
    return pl.coalesce(clocks) if len(clocks) > 1 else clocks[0]


def latest_per_machine(frame: pl.DataFrame) -> pl.DataFrame:
    """The newest row per ``MachineId``, by measurement time, then receipt time, then arrival.

    Rows without a ``MachineId`` are dropped; a frame without the column gives an empty frame.
    """
    if "MachineId" not in frame.columns:
        return frame.clear()
    order = _order_expr(frame.columns)
    ranked = frame.filter(pl.col("MachineId").is_not_null()).with_row_index(_ORDER)
    keys = [_ORDER] if order is None else [order, _ORDER]
    return (
        ranked.sort(keys, nulls_last=False)
        .unique("MachineId", keep="last", maintain_order=True)
        .sort(_ORDER)
        .drop(_ORDER)
    )


def _concat(frames: Sequence[pl.DataFrame]) -> pl.DataFrame:
    # Batches written with different schema versions may differ in columns or integer widths.
    if not frames:
        return pl.DataFrame()
    if len(frames) == 1:
        return frames[0]
    return pl.concat(frames, how="diagonal_relaxed", rechunk=True)


class LiveTail:
    """Follows a :class:`BatchSource` in a daemon thread and keeps a bounded buffer.

    The buffer holds the newest ``history`` rows and, separately, the latest row per machine,
    so machines that report rarely stay known after their rows leave the history.

    >>> with LiveTail(source, history=50_000) as tail:   # doctest: +SKIP
    ...     pump = bind(tail, machine_map, rate_hz=1.0)

    ``pause()`` stops polling (the source is not read while paused; a group-managed Kafka
    consumer must tolerate that gap, e.g. by using manual assignment). An exception from the
    source stops the thread and is kept in :attr:`error`; it is never swallowed.
    """

    def __init__(
        self,
        source: BatchSource,
        *,
        history: int = _DEFAULT_HISTORY,
        poll_timeout: float = 0.25,
        rate_window: float = 5.0,
    ) -> None:
        if history < 1:
            raise ValueError(f"history must be a positive row count, got {history}")
        if poll_timeout <= 0:
            raise ValueError(f"poll_timeout must be positive, got {poll_timeout}")
        self._source = source
        self._history = history
        self._poll_timeout = poll_timeout
        self._rate_window = rate_window
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._running = threading.Event()  # cleared while paused
        self._running.set()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._chunks: deque[pl.DataFrame] = deque()
        self._buffered = 0
        self._latest = pl.DataFrame()
        self._cache: tuple[int, pl.DataFrame] | None = None
        self._arrivals: deque[tuple[float, int]] = deque()
        self._version = 0
        self._records = 0
        self._trimmed = 0
        self._errors = 0
        self._error: BaseException | None = None
        self._bad: deque[pl.DataFrame] = deque()
        self._bad_count = 0

    # -- lifecycle ------------------------------------------------------------------------------

    def start(self) -> Self:
        """Start the consumer thread (a no-op when already running)."""
        with self._lock:
            if self._closed or self._stop.is_set():
                raise RuntimeError("this LiveTail was stopped; create a new one to tail again")
            if self._thread is not None:
                return self
            self._thread = threading.Thread(
                target=self._consume, name="tu-analytics-live-tail", daemon=True
            )
            self._thread.start()
        return self

    def pause(self) -> None:
        """Stop polling the source until :meth:`resume`; the buffer is kept."""
        self._running.clear()

    def resume(self) -> None:
        """Poll the source again after :meth:`pause`."""
        self._running.set()

    def stop(self, timeout: float | None = 10.0) -> None:
        """Stop the thread, wait for it, and close the source. Safe to call more than once.

        Raises :class:`TimeoutError` when the thread is still inside ``source.poll`` after
        ``timeout`` seconds (a source that ignores its poll timeout); the thread then closes the
        source itself when ``poll`` returns.
        """
        self._stop.set()
        self._running.set()  # wake a paused thread so it can see the stop
        thread = self._thread
        if thread is None:
            self._close_source()
            return
        if thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                raise TimeoutError(
                    f"the live tail's source did not return from poll() within {timeout} s"
                )

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """True while the consumer thread is alive (paused or not)."""
        thread = self._thread
        return thread is not None and thread.is_alive()

    @property
    def paused(self) -> bool:
        return not self._running.is_set() and not self._stop.is_set()

    @property
    def stopped(self) -> bool:
        """True once :meth:`stop` was called or the thread ended on an error."""
        return self._stop.is_set()

    # -- reading ---------------------------------------------------------------------------------

    @property
    def version(self) -> int:
        """Increments once per appended batch: a cheap "anything new?" check for the pump."""
        return self._version

    @property
    def error(self) -> BaseException | None:
        """The exception that stopped the consumer thread, if any."""
        return self._error

    @property
    def stats(self) -> TailStats:
        now = time.monotonic()
        with self._lock:
            recent = sum(n for t, n in self._arrivals if now - t <= self._rate_window)
            return TailStats(
                records=self._records,
                batches=self._version,
                records_per_s=recent / self._rate_window,
                errors=self._errors,
                bad_records=self._bad_count,
                buffered=self._buffered,
                trimmed=self._trimmed,
                machines=self._latest.height,
            )

    def frame(self) -> pl.DataFrame:
        """The buffered history (oldest first) as one frame; a copy, safe to keep."""
        with self._lock:
            version = self._version
            cached = self._cache
            if cached is not None and cached[0] == version:
                return cached[1].clone()  # a shallow copy: callers may mutate theirs in place
            chunks = list(self._chunks)
        # Concatenate outside the lock so the consumer thread is never held up by a reader.
        frame = _concat(chunks)
        with self._lock:
            if self._version == version:
                self._cache = (version, frame)
        return frame.clone()

    def latest(self) -> pl.DataFrame:
        """The latest row per machine (by measurement time, then receipt time)."""
        with self._lock:
            return self._latest.clone()

    def __repr__(self) -> str:
        s = self.stats
        state = "paused" if self.paused else "running" if self.running else "stopped"
        return (
            f"<LiveTail {state}: {s.records} records in {s.batches} batches, "
            f"{s.buffered} buffered, {s.machines} machines, {s.records_per_s:.0f} rec/s"
            f"{', error: ' + type(self._error).__name__ if self._error else ''}>"
        )

    # -- the consumer thread -----------------------------------------------------------------------

    def _consume(self) -> None:
        try:
            while not self._stop.is_set():
                if not self._running.is_set():
                    self._running.wait(self._poll_timeout)
                    continue
                batch = self._source.poll(self._poll_timeout)
                self._collect_bad()
                if batch is not None and batch.height:
                    self._append(batch)
        except BaseException as exc:  # everything, so nothing is lost: see .error
            with self._lock:
                self._error = exc
                self._errors += 1
            self._stop.set()
        finally:
            self._close_source()

    @property
    def positions(self) -> dict[int, int]:
        """Next offset per partition after the records received (empty for sources that do
        not track offsets): pass to ``conn.tail(start=...)`` to resume where this tail was."""
        return dict(getattr(self._source, "positions", {}))

    def bad_records(self) -> pl.DataFrame:
        """Records the source could not decode (newest ``history`` rows; partition, offset,
        raw bytes and reason), as windows keep them in ``window.errors``."""
        with self._lock:
            return _concat(list(self._bad))

    def _collect_bad(self) -> None:
        # Optional on a source: the Kafka one hands out records it could not decode.
        take: Callable[[], pl.DataFrame | None] | None = getattr(self._source, "take_errors", None)
        bad = take() if take is not None else None
        if bad is None or not bad.height:
            return
        with self._lock:
            self._bad.append(bad)
            self._bad_count += bad.height
            while sum(f.height for f in self._bad) > self._history and len(self._bad) > 1:
                self._bad.popleft()

    def _append(self, batch: pl.DataFrame) -> None:
        batch = batch.clone()  # our own handle: the source may reuse or mutate its frame
        # Only this thread writes the latest table, so it can be computed outside the lock.
        latest = latest_per_machine(_concat([self._latest, batch]) if self._latest.width else batch)
        now = time.monotonic()
        with self._lock:
            self._chunks.append(batch)
            self._buffered += batch.height
            self._trim()
            self._latest = latest
            self._records += batch.height
            self._arrivals.append((now, batch.height))
            while self._arrivals and now - self._arrivals[0][0] > self._rate_window:
                self._arrivals.popleft()
            self._version += 1

    def _trim(self) -> None:
        excess = self._buffered - self._history
        while excess > 0 and self._chunks:
            head = self._chunks[0]
            if head.height <= excess:
                self._chunks.popleft()
                dropped = head.height
            else:
                self._chunks[0] = head.slice(excess)
                dropped = excess
            self._buffered -= dropped
            self._trimmed += dropped
            excess -= dropped

    def _close_source(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
        try:
            self._source.close()
        except Exception as exc:
            with self._lock:
                if self._error is None:
                    self._error = exc
                self._errors += 1
