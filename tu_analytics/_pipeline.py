"""The window pipeline's narrow boundary: plan offset ranges, then read them.

Every engine (Polars windows, the archive, Spark) shares the two steps:

- :func:`plan` turns ``[start, end)`` and a ``lateness`` into one :class:`PartitionRange` per
  partition: from the first offset at or after ``start`` to the first at or after
  ``end + lateness`` (so records written late, out of timestamp order, are still read), capped
  at the high watermark (the last stable offset under ``read_committed``) taken when planning.
- :func:`read` reads exactly those ranges and hands on :class:`Chunk` s of raw records.
  A range is read when the consumer's *position* has reached its end, never when offset
  ``end - 1`` was seen: control records (transaction markers) and aborted transactions occupy
  offsets that are never delivered.

The consumer is anything with the :class:`RecordConsumer` methods: ``_kafka.KafkaConsumer``
over confluent-kafka, or ``_fake.FakeConsumer`` in memory for tests. Records are filtered by
timestamp to ``[start, end)`` in :meth:`Chunk.within`; decoding happens elsewhere.
"""

from __future__ import annotations

import bisect
import contextlib
import gc
import itertools
import operator
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Final, Protocol

import polars as pl

from .errors import WindowError, WindowTooLargeError

#: Records per ``consume()`` call: one Python round trip per batch, not per record.
BATCH_RECORDS: Final = 20_000
#: Records per chunk handed on: the unit of decoding (~0.15 s of one core's work).
CHUNK_RECORDS: Final = 16_384


# -- the consumer as the pipeline sees it ----------------------------------------------------


@dataclass(frozen=True)
class ConsumeError:
    """An error the consumer reported instead of a record (librdkafka's error name)."""

    code: str
    text: str
    fatal: bool = False
    partition: int | None = None
    offset: int | None = None


@dataclass
class Batch:
    """One ``consume()`` result as columns: records in arrival order, and errors apart."""

    partitions: list[int] = field(default_factory=list)
    offsets: list[int] = field(default_factory=list)
    stamps: list[int] = field(default_factory=list)
    keys: list[bytes | None] = field(default_factory=list)
    values: list[bytes | None] = field(default_factory=list)
    errors: list[ConsumeError] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.offsets)


class RecordConsumer(Protocol):
    """The consumer of one topic, as planning and reading use it.

    ``partitions`` raises the project's errors (authentication, authorization, unknown topic,
    no answer). ``offsets_for_times`` gives per partition the first offset whose timestamp is
    at or after the asked time, or -1 where there is none below the high watermark.
    ``position`` is the next offset the consumer will fetch (past control records and aborted
    transactions it skipped), or -1 while unknown."""

    topic: str

    def partitions(self, timeout: float) -> list[int]: ...
    def watermarks(self, partition: int, timeout: float) -> tuple[int, int]: ...
    def offsets_for_times(self, stamps: Mapping[int, int], timeout: float) -> dict[int, int]: ...
    def assign(self, starts: Mapping[int, int]) -> None: ...
    def unassign(self, partitions: Iterable[int]) -> None: ...
    def consume(self, max_records: int, timeout: float) -> Batch: ...
    def position(self, partition: int) -> int: ...
    def auth_failure(self) -> str | None: ...
    def last_error(self) -> str: ...
    def close(self) -> None: ...


# -- planning --------------------------------------------------------------------------------


@dataclass(frozen=True)
class PartitionRange:
    partition: int
    start: int  # first offset to read
    end: int  # one past the last offset to read
    low: int  # the partition's low watermark when planned (oldest retained)
    high: int = -1  # the high watermark (last stable offset) when planned
    #: True when ``end + lateness`` lies past the high watermark: the range stops at the
    #: watermark and later writes may still add records to the window.
    open: bool = False

    @property
    def count(self) -> int:
        return max(0, self.end - self.start)


@dataclass(frozen=True)
class Plan:
    topic: str
    start_ms: int
    end_ms: int
    lateness_ms: int
    ranges: tuple[PartitionRange, ...]
    planned_at_ms: int

    @property
    def records(self) -> int:
        """Offsets planned: an upper bound of the records (gaps and the filter remove some)."""
        return sum(r.count for r in self.ranges)


def plan(consumer: RecordConsumer, start_ms: int, end_ms: int, lateness_ms: int, *,
         timeout: float, now_ms: int | None = None) -> Plan:
    """Per partition: ``[offset_for(start), offset_for(end + lateness))``, capped at the high
    watermark. Exact while no record's timestamp lies more than ``lateness`` behind one
    written before it in its partition."""
    planned_at = now_ms if now_ms is not None else int(time.time() * 1000)
    parts = consumer.partitions(timeout)
    marks = {p: consumer.watermarks(p, timeout) for p in parts}
    starts = consumer.offsets_for_times(dict.fromkeys(parts, start_ms), timeout)
    ends = consumer.offsets_for_times(dict.fromkeys(parts, end_ms + lateness_ms), timeout)
    highs = {p: marks[p][1] for p in parts}
    firsts = settle(consumer, {p: (_found(starts[p], highs[p]), start_ms) for p in parts},
                    highs, timeout)
    target = end_ms + lateness_ms
    lasts = settle(consumer, {p: (max(_found(ends[p], highs[p]), firsts[p]), target)
                              for p in parts}, highs, timeout)
    ranges = [PartitionRange(p, firsts[p], lasts[p], marks[p][0], highs[p],
                             open=lasts[p] >= highs[p]) for p in parts]
    return Plan(consumer.topic, start_ms, end_ms, lateness_ms, tuple(ranges), planned_at)


#: Records per consume() while settling a plan: usually the first batch answers.
_PROBE_RECORDS: Final = 2000


def _found(offset: int, high: int) -> int:
    # -1: no record at or after the time, i.e. the range ends at the high watermark.
    return high if offset < 0 else min(offset, high)


def settle(consumer: RecordConsumer, lookups: dict[int, tuple[int, int]],
           highs: dict[int, int], timeout: float) -> dict[int, int]:
    """Per partition, the offset of the first *record* at or after ``offset`` stamped at or
    after ``time`` (``lookups[p] = (offset, time)``; the high watermark if none).

    The broker's time lookup also counts transaction markers, which the broker stamps when
    it writes them: behind a forwarding job catching up on a backlog, a marker stamped "now"
    follows records stamped hours earlier, and a window would end (or start) there. Every
    record before the first one stamped at or after ``time`` is stamped before it, so reading
    on to that record is exact; when the broker's answer was a record already (the usual
    case) it costs one fetch for all partitions together."""
    done = {p: highs[p] for p, (off, _) in lookups.items() if off >= highs[p]}
    todo = {p: v for p, v in lookups.items() if p not in done}
    if not todo:
        return done
    assigned = list(todo)
    consumer.assign({p: off for p, (off, _) in todo.items()})
    try:
        last_progress = time.monotonic()
        while todo:
            batch = consumer.consume(_PROBE_RECORDS, 0.5)
            _raise_fatal(consumer, batch)
            for q, o, t in zip(batch.partitions, batch.offsets, batch.stamps, strict=True):
                if q in todo and o >= todo[q][0] and t >= todo[q][1]:
                    done[q] = o
                    del todo[q]
            for q in [q for q in todo if consumer.position(q) >= highs[q]]:
                done[q] = highs[q]
                del todo[q]
            if len(batch):
                last_progress = time.monotonic()
            elif todo and time.monotonic() - last_progress > timeout:
                q = min(todo)
                raise WindowError(
                    f"no data for {timeout:.0f} s from topic {consumer.topic!r} while "
                    f"planning ({consumer.last_error()})",
                    topic=consumer.topic, partition=q, offsets=(todo[q][0], highs[q]))
    finally:
        consumer.unassign(assigned)  # only what was assigned: librdkafka refuses the rest
    return done


def _raise_fatal(consumer: RecordConsumer, batch: Batch) -> None:
    fatal = [e for e in batch.errors if e.fatal]
    if fatal:
        raise WindowError(f"planning topic {consumer.topic!r}: {fatal[0].text}",
                          topic=consumer.topic, partition=fatal[0].partition)


# -- chunks ----------------------------------------------------------------------------------

#: What a chunk's frame holds, in offset order.
RECORDS_SCHEMA: Final = pl.Schema({
    "partition": pl.Int32(),
    "offset": pl.Int64(),
    "kafka_timestamp": pl.Datetime("ms", "UTC"),
    "key": pl.Binary(),
    "value": pl.Binary(),
})


@dataclass
class Chunk:
    """Consecutive records of one partition, in offset order, as the consumer handed them out
    (columns as lists; ``values`` are the framed Avro bytes, ``None`` for a tombstone)."""

    partition: int
    offsets: list[int] = field(default_factory=list)
    stamps: list[int] = field(default_factory=list)
    keys: list[bytes | None] = field(default_factory=list)
    values: list[bytes | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.offsets)

    def keep(self, mask: list[bool]) -> Chunk:
        c = itertools.compress
        return Chunk(self.partition, list(c(self.offsets, mask)), list(c(self.stamps, mask)),
                     list(c(self.keys, mask)), list(c(self.values, mask)))

    def within(self, start_ms: int, end_ms: int) -> Chunk:
        """The records whose timestamp lies in ``[start_ms, end_ms)``."""
        stamps = self.stamps
        if not stamps or (min(stamps) >= start_ms and max(stamps) < end_ms):
            return self
        return self.keep([start_ms <= t < end_ms for t in stamps])

    def frame(self) -> pl.DataFrame:
        return pl.DataFrame({
            "partition": pl.repeat(self.partition, len(self), dtype=pl.Int32, eager=True),
            "offset": pl.Series(self.offsets, dtype=pl.Int64),
            "kafka_timestamp": pl.Series(self.stamps, dtype=pl.Int64)
            .cast(pl.Datetime("ms", "UTC")),
            "key": pl.Series(self.keys, dtype=pl.Binary),
            "value": pl.Series(self.values, dtype=pl.Binary),
        })


class Deduper:
    """Drops exact repeats (same key and value bytes) within a partition, keeping the first
    offset. Chunks of a partition must come in offset order (``read`` guarantees that)."""

    def __init__(self) -> None:
        self._seen: dict[int, set[tuple[bytes | None, bytes | None]]] = {}
        self.dropped = 0

    def __call__(self, chunk: Chunk) -> Chunk:
        seen = self._seen.setdefault(chunk.partition, set())
        mask = []
        for pair in zip(chunk.keys, chunk.values, strict=True):
            mask.append(pair not in seen)
            seen.add(pair)
        kept = chunk.keep(mask) if not all(mask) else chunk
        self.dropped += len(chunk) - len(kept)
        return kept


# -- reading ---------------------------------------------------------------------------------


@dataclass
class ReadStats:
    count: int = 0  # records read (before the timestamp filter)
    bytes: int = 0  # their value bytes
    #: The largest step back in timestamp seen, from the highest timestamp before it in its
    #: partition (0: every partition in timestamp order).
    max_disorder_ms: int = 0
    #: Per partition, the highest timestamp read (partitions with no record are absent).
    last_stamp: dict[int, int] = field(default_factory=dict)
    #: Non-fatal consumer errors seen (librdkafka retries those itself).
    errors: list[ConsumeError] = field(default_factory=list)


def read(
    consumer: RecordConsumer,
    ranges: Iterable[PartitionRange],
    on_chunk: Callable[[Chunk], None],
    *,
    stall_timeout: float = 30.0,
    max_bytes: int | None = None,
    on_progress: Callable[[int, ReadStats], None] | None = None,
    chunk_records: int = CHUNK_RECORDS,
    poll_timeout: float = 0.5,
) -> ReadStats:
    """Read exactly the planned offsets, in chunks of ``chunk_records`` consecutive records of
    one partition (fewer at a partition's end), each partition's in offset order.
    ``on_progress(records, stats)`` follows each batch (it may raise to stop the read). Fails
    loudly (:class:`WindowError`) rather than return part of the ranges."""
    reader = _Reader(consumer, list(ranges), on_chunk, chunk_records)
    if reader.todo:
        consumer.assign({p: r.start for p, r in reader.todo.items()})
    last_progress = time.monotonic()
    # Each consume() makes thousands of objects the cyclic GC would traverse over and over.
    with gc_paused():
        reader.finish_reached()  # ranges made only of markers or aborted records
        while reader.todo:
            # Ask for no more than is still planned: consume() returns as soon as that many
            # arrived, instead of waiting out its timeout on a small window.
            want = max(1, min(BATCH_RECORDS, reader.left()))
            got = reader.take(consumer.consume(want, poll_timeout))
            if got:
                if on_progress:
                    on_progress(got, reader.stats)
                _check_size(consumer, reader.stats, max_bytes)
                last_progress = time.monotonic()
            # Markers and aborted records leave holes at a range's end that deliver nothing:
            # the position (moved past them by consume) says when a range is done.
            reader.finish_reached()
            _check_alive(consumer, reader, last_progress, stall_timeout)
    return reader.stats


def _check_size(consumer: RecordConsumer, stats: ReadStats, max_bytes: int | None) -> None:
    if max_bytes is not None and stats.bytes > max_bytes:
        raise WindowTooLargeError(
            f"window exceeds max_bytes={max_bytes:,} after {stats.count:,} records; narrow "
            "the range, pass machines=, or read it with the archive or Spark",
            topic=consumer.topic, limit_bytes=max_bytes, estimate_bytes=stats.bytes,
        )


def _check_alive(consumer: RecordConsumer, reader: _Reader, last_progress: float,
                 stall_timeout: float) -> None:
    from .errors import authentication_error

    auth = consumer.auth_failure()
    if auth:
        raise authentication_error("broker", "", None, auth, topic=consumer.topic)
    if reader.todo and time.monotonic() - last_progress > stall_timeout:
        missing = reader.left()
        p = min(reader.todo)
        raise WindowError(
            f"no data for {stall_timeout:.0f} s from topic {consumer.topic!r} with "
            f"{missing:,} planned offsets still unread ({consumer.last_error()}); no partial "
            "window is returned — retry when the broker is reachable",
            topic=consumer.topic, partition=p,
            offsets=(reader.next_offset[p], reader.todo[p].end),
        )


class _Reader:
    """Takes batches apart: range checks per run of one partition, not per record."""

    def __init__(self, consumer: RecordConsumer, ranges: list[PartitionRange],
                 emit: Callable[[Chunk], None], chunk_records: int) -> None:
        self.consumer, self.emit, self.size = consumer, emit, chunk_records
        self.todo = {r.partition: r for r in ranges if r.count > 0}
        self.next_offset = {p: r.start for p, r in self.todo.items()}
        self.pending = {p: Chunk(p) for p in self.todo}
        self.stats = ReadStats()
        self._max_seen: dict[int, int] = {}

    def left(self) -> int:
        return sum(r.end - self.next_offset[p] for p, r in self.todo.items())

    def take(self, batch: Batch) -> int:
        """Keep the batch's records that are planned and new; return how many."""
        if batch.errors:
            self._errors(batch.errors)
        got = 0
        offs = batch.offsets
        for p, a, b in _runs(batch.partitions):
            r = self.todo.get(p)
            if r is None:
                continue
            keep = _keep(offs, a, b, self.next_offset[p], r.end)
            if keep:
                got += self._add(p, r, batch, keep)
        self.stats.count += got
        return got

    def _add(self, p: int, r: PartitionRange, batch: Batch, keep: range | list[int]) -> int:
        if isinstance(keep, range):
            sl = slice(keep.start, keep.stop)
            offsets, stamps = batch.offsets[sl], batch.stamps[sl]
            keys, values = batch.keys[sl], batch.values[sl]
        else:
            offsets, stamps = [batch.offsets[i] for i in keep], [batch.stamps[i] for i in keep]
            keys, values = [batch.keys[i] for i in keep], [batch.values[i] for i in keep]
        self._disorder(p, stamps)
        buf = self.pending[p]
        buf.offsets += offsets
        buf.stamps += stamps
        buf.keys += keys
        buf.values += values
        self.stats.bytes += sum(map(len, filter(None, values)))
        self.next_offset[p] = offsets[-1] + 1
        if self.next_offset[p] >= r.end:
            self.finish(p)
        elif len(buf) >= self.size:
            self.pending[p] = _cut(buf, self.size, self.emit)
        return len(offsets)

    def _disorder(self, p: int, stamps: list[int]) -> None:
        # Running maximum before each record, minus its timestamp: how late it came.
        before = list(itertools.accumulate(stamps, max, initial=self._max_seen.get(p, stamps[0])))
        step = max(map(operator.sub, before, stamps))
        self.stats.max_disorder_ms = max(self.stats.max_disorder_ms, step)
        self._max_seen[p] = self.stats.last_stamp[p] = before[-1]

    def _errors(self, errors: list[ConsumeError]) -> None:
        for err in errors:
            if err.fatal or err.code == "TOPIC_AUTHORIZATION_FAILED":
                raise WindowError(f"reading {self.consumer.topic!r} failed: {err.text}",
                                  topic=self.consumer.topic, partition=err.partition)
        # Transient errors (a broker away, partition EOF) are librdkafka's to retry.
        self.stats.errors.extend(errors[:100 - len(self.stats.errors)])

    def finish_reached(self) -> None:
        for p, r in list(self.todo.items()):
            if self.consumer.position(p) >= r.end:
                self.finish(p)

    def finish(self, p: int) -> None:
        """Partition ``p`` is read to its planned end: stop fetching it, hand on the rest."""
        del self.todo[p]
        self.consumer.unassign([p])
        rest = _cut(self.pending[p], self.size, self.emit)
        if rest.offsets:
            self.emit(rest)
        self.pending[p] = Chunk(p)


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """The cyclic garbage collector off for the block (as it was before, after it)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _cut(buf: Chunk, size: int, emit: Callable[[Chunk], None]) -> Chunk:
    """Hand on ``buf`` in chunks of exactly ``size`` records; return the rest."""
    n = len(buf) // size * size
    for lo in range(0, n, size):
        hi = lo + size
        emit(Chunk(buf.partition, buf.offsets[lo:hi], buf.stamps[lo:hi], buf.keys[lo:hi],
                   buf.values[lo:hi]))
    return Chunk(buf.partition, buf.offsets[n:], buf.stamps[n:], buf.keys[n:], buf.values[n:])


def _runs(parts: list[int]) -> list[tuple[int, int, int]]:
    """(partition, start, stop) of each run of one partition in a batch (fetches arrive per
    partition, so a batch holds a few long runs)."""
    n = len(parts)
    if not n:
        return []
    if parts.count(parts[0]) == n:
        return [(parts[0], 0, n)]
    cuts = [0, *itertools.compress(range(1, n), map(operator.ne, parts, parts[1:])), n]
    return [(parts[a], a, b) for a, b in itertools.pairwise(cuts)]


def _keep(offs: list[int], a: int, b: int, first: int, end: int) -> range | list[int]:
    """Indexes in ``[a, b)`` (one partition's run) to keep: offsets in ``[first, end)``, each
    once and in order. Offsets normally increase, so this is one slice found by bisection."""
    if all(map(operator.lt, itertools.islice(offs, a, b - 1), itertools.islice(offs, a + 1, b))):
        lo = bisect.bisect_left(offs, first, a, b)
        return range(lo, bisect.bisect_left(offs, end, lo, b))
    # Re-delivered or out-of-order offsets (e.g. after a broker-side reset): one by one.
    keep: list[int] = []
    for i in range(a, b):
        if first <= offs[i] < end:
            keep.append(i)
            first = offs[i] + 1
    return keep
