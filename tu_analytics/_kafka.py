"""Consumers, window planning and the fetch loop.

A window is planned before anything is read: per partition, the first offset at or after
``start`` and the first at or after ``end`` (``offsets_for_times``), with the end capped at
the high watermark taken when the call starts, so a window on a live topic always
finishes. The fetch loop then reads exactly those offset ranges and hands the records on
(partition, offset, timestamp, key, value) in chunks per partition as they arrive, or as
one frame; decoding happens elsewhere.
"""

from __future__ import annotations

import bisect
import contextlib
import gc
import itertools
import logging
import operator
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final, cast

import polars as pl

from ._settings import Settings, scrub
from .errors import (
    AuthenticationError,
    AuthorizationError,
    ConnectionError,
    TopicNotFoundError,
    WindowError,
    WindowTooLargeError,
)

log = logging.getLogger("tu_analytics.kafka")

#: librdkafka error names that mean "the credentials are wrong", whatever the call.
_AUTH = ("_AUTHENTICATION", "SASL_AUTHENTICATION_FAILED")


@dataclass(frozen=True)
class PartitionRange:
    partition: int
    start: int  # first offset to read
    end: int  # one past the last offset to read
    low: int  # the partition's low watermark when planned (oldest retained)

    @property
    def count(self) -> int:
        return max(0, self.end - self.start)


class _Errors:
    """Collects asynchronous client errors (auth failures arrive only through error_cb)."""

    def __init__(self, secrets: list[str]) -> None:
        self.secrets = secrets
        self.errors: list[Any] = []

    def __call__(self, err: Any) -> None:
        self.errors.append(err)

    def auth_failure(self) -> str | None:
        for err in self.errors:
            if err.name() in _AUTH or "SASL authentication" in err.str():
                return scrub(err.str(), self.secrets)
        return None

    def last(self) -> str:
        return scrub(self.errors[-1].str(), self.secrets) if self.errors else "no answer"


class _Logger(logging.LoggerAdapter[logging.Logger]):
    """librdkafka's own log lines, scrubbed, at DEBUG (they are noisy on reconnects)."""

    def __init__(self, secrets: list[str]) -> None:
        super().__init__(log, {})
        self._secrets = secrets

    def log(self, level: int, msg: object, *args: object, **kwargs: Any) -> None:
        text = scrub(str(msg) % args if args else str(msg), self._secrets)
        log.debug("%s", text)


def make_consumer(settings: Settings, **overrides: Any) -> tuple[Any, _Errors]:
    from confluent_kafka import Consumer

    errors = _Errors(settings.secrets())
    # Tuned defaults first; the user's own librdkafka settings (extra_kafka) win over them.
    conf: dict[str, Any] = {
        "fetch.max.bytes": 64 * 1024 * 1024,
        "max.partition.fetch.bytes": 16 * 1024 * 1024,
        "queued.max.messages.kbytes": 256 * 1024,
        # A partition whose local queue holds this many messages (100k by default) is not
        # fetched again for fetch.queue.backoff.ms (1 s): a window read sat idle about half
        # of the time. The queue stays bounded by queued.max.messages.kbytes.
        "queued.min.messages": 10_000_000,
    }
    conf.update(settings.kafka_config())
    conf.update({
        "group.id": settings.group_id,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": False,
        "error_cb": errors,
        "logger": _Logger(settings.secrets()),
    })
    conf.update(overrides)
    # librdkafka refuses a fetch.max.bytes below message.max.bytes (1 MB unless set); a
    # consumer sends only small requests, so a smaller fetch limit lowers that bound too.
    fetch_max = int(conf["fetch.max.bytes"])
    if "message.max.bytes" not in conf and fetch_max < 1_000_000:
        conf["message.max.bytes"] = max(1000, fetch_max)
    return Consumer(conf), errors


def describe_topic(consumer: Any, errors: _Errors, settings: Settings, timeout: float) -> list[int]:
    """Partitions of the topic; a clear error for wrong credentials, ACLs or unknown topics."""
    from confluent_kafka import KafkaException

    topic = settings.topic
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        auth = errors.auth_failure()
        if auth:
            raise AuthenticationError(
                f"the broker at {settings.bootstrap_servers} rejected the SASL credentials of "
                f"{settings.sasl_username!r}: {auth}"
            )
        # error_cb (where SASL failures arrive) is served only by poll/consume.
        consumer.poll(0)
        try:
            wait = min(1.0, max(0.1, deadline - time.monotonic()))
            md = consumer.list_topics(topic, timeout=wait)
        except KafkaException as exc:
            last = scrub(str(exc), settings.secrets())
            continue
        t = md.topics.get(topic)
        if t is None:
            continue
        if t.error is not None:
            name = t.error.name()
            if name == "TOPIC_AUTHORIZATION_FAILED":
                # Brokers answer this for unknown topics too, so as not to reveal names.
                raise AuthorizationError(
                    f"topic {topic!r} does not exist or {settings.sasl_username!r} may not read "
                    "it (TOPIC_AUTHORIZATION_FAILED): check the topic name and its ACLs"
                )
            if name in ("UNKNOWN_TOPIC_OR_PART", "UNKNOWN_TOPIC_ID"):
                raise TopicNotFoundError(
                    f"topic {topic!r} does not exist on {settings.bootstrap_servers}")
            last = name
            continue
        if t.partitions:
            return sorted(t.partitions)
    auth = errors.auth_failure()
    if auth:
        raise AuthenticationError(
            f"the broker at {settings.bootstrap_servers} rejected the SASL credentials of "
            f"{settings.sasl_username!r}: {auth}"
        )
    raise ConnectionError(
        f"no answer about topic {topic!r} from {settings.bootstrap_servers} within "
        f"{timeout:.0f} s ({last or errors.last()})"
    )


def plan(consumer: Any, errors: _Errors, settings: Settings, start_ms: int, end_ms: int,
         timeout: float) -> list[PartitionRange]:
    from confluent_kafka import TopicPartition

    topic = settings.topic
    parts = describe_topic(consumer, errors, settings, timeout)
    marks = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout,
                                               cached=False)
             for p in parts}

    def lookup(ts: int) -> dict[int, int]:
        found = consumer.offsets_for_times([TopicPartition(topic, p, ts) for p in parts],
                                           timeout=timeout)
        # -1: no record at or after ts, i.e. the range ends at the high watermark.
        return {tp.partition: (marks[tp.partition][1] if tp.offset < 0 else tp.offset)
                for tp in found}

    starts, ends = lookup(start_ms), lookup(end_ms)
    return [
        PartitionRange(p, starts[p], min(ends[p], marks[p][1]), marks[p][0]) for p in parts
    ]


#: What ``fetch`` returns, in (partition, offset) order.
RECORDS_SCHEMA: Final = pl.Schema({
    "partition": pl.Int32(),
    "offset": pl.Int64(),
    "kafka_timestamp": pl.Datetime("ms", "UTC"),
    "key": pl.Binary(),
    "value": pl.Binary(),
})
_second = operator.itemgetter(1)
#: Records per ``consume()`` call: one Python round trip per batch, not per record.
_BATCH = 20_000
#: Records per chunk handed on: the unit of decoding (~0.15 s of one core's work).
CHUNK_RECORDS = 16_384


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

    def frame(self, start_ms: int, end_ms: int) -> tuple[pl.DataFrame, list[bytes | None]]:
        """The records whose timestamp lies in ``[start_ms, end_ms)`` (partition, offset,
        kafka_timestamp, key, value) and their values as the same ``bytes`` objects."""
        offsets, stamps, keys, values = self.offsets, self.stamps, self.keys, self.values
        # Offsets were planned from timestamps; keep exactly the records inside [start, end).
        if stamps and not (min(stamps) >= start_ms and max(stamps) < end_ms):
            keep = [start_ms <= t < end_ms for t in stamps]
            offsets, stamps = list(itertools.compress(offsets, keep)), list(
                itertools.compress(stamps, keep))
            keys, values = list(itertools.compress(keys, keep)), list(
                itertools.compress(values, keep))
        frame = pl.DataFrame({
            "partition": pl.repeat(self.partition, len(offsets), dtype=pl.Int32, eager=True),
            "offset": pl.Series(offsets, dtype=pl.Int64),
            "kafka_timestamp": pl.Series(stamps, dtype=pl.Int64).cast(pl.Datetime("ms", "UTC")),
            "key": pl.Series(keys, dtype=pl.Binary),
            "value": pl.Series(values, dtype=pl.Binary),
        })
        return frame, values


@dataclass
class Fetched:
    # partition, offset, kafka_timestamp, key, value in (partition, offset) order; empty
    # when the records went to ``on_chunk`` instead.
    records: pl.DataFrame
    bytes: int
    count: int  # records read (before the timestamp filter)


def fetch(
    consumer: Any,
    errors: _Errors,
    settings: Settings,
    ranges: list[PartitionRange],
    *,
    start_ms: int,
    end_ms: int,
    max_bytes: int | None,
    stall_timeout: float,
    on_progress: Callable[[int], None] | None = None,
    on_chunk: Callable[[Chunk], None] | None = None,
    chunk_records: int = CHUNK_RECORDS,
) -> Fetched:
    """Read exactly the planned offsets; fail loudly rather than return part of them.

    With ``on_chunk``, records are handed on as they arrive, in chunks of ``chunk_records``
    consecutive records of one partition (fewer at a partition's end), so a caller can decode
    while the read goes on; each partition's chunks come in offset order. Without it, they
    are returned in ``Fetched.records``."""
    from confluent_kafka import TopicPartition

    topic = settings.topic
    collected: list[Chunk] = []
    reader = _Reader(consumer, settings, ranges, on_chunk or collected.append, chunk_records)
    todo = reader.todo
    if todo:
        consumer.assign([TopicPartition(topic, p, r.start) for p, r in todo.items()])
    last_progress = time.monotonic()
    # Each consume() makes thousands of Message objects, which the cyclic GC would traverse
    # over and over; none of them is part of a cycle.
    with gc_paused():
        while todo:
            # Ask for no more than is still planned: consume() returns as soon as that many
            # arrived, instead of waiting out its timeout on a small window.
            left = sum(r.end - reader.next_offset[p] for p, r in todo.items())
            want = max(1, min(_BATCH, left))
            got = reader.take(consumer.consume(num_messages=want, timeout=0.5))
            if got:
                if on_progress:
                    on_progress(got)
                if max_bytes is not None and reader.bytes > max_bytes:
                    raise WindowTooLargeError(
                        f"window exceeds max_bytes={max_bytes:,} after {reader.count:,} "
                        "records; narrow the range or raise max_bytes"
                    )
                last_progress = time.monotonic()
                continue
            # Compacted/aborted offsets leave holes; a partition ends at its planned end
            # even when the last offsets hold no record.
            for p, r in list(todo.items()):
                if consumer.position([TopicPartition(topic, p)])[0].offset >= r.end:
                    reader.finish(p)
            auth = errors.auth_failure()
            if auth:
                raise AuthenticationError(
                    f"the broker rejected the credentials mid-window: {auth}")
            if todo and time.monotonic() - last_progress > stall_timeout:
                missing = sum(r.end - reader.next_offset[p] for p, r in todo.items())
                raise WindowError(
                    f"no data from {settings.bootstrap_servers} for {stall_timeout:.0f} s with "
                    f"{missing:,} planned records still unread ({errors.last()}); no partial "
                    "window is returned — retry when the broker is reachable"
                )
    if on_chunk is not None:
        return Fetched(pl.DataFrame(schema=RECORDS_SCHEMA), reader.bytes, reader.count)
    collected.sort(key=lambda c: c.partition)  # stable: offset order within a partition
    frames = [c.frame(start_ms, end_ms)[0] for c in collected]
    records = pl.concat(frames) if frames else pl.DataFrame(schema=RECORDS_SCHEMA)
    return Fetched(records, reader.bytes, reader.count)


class _Reader:
    """Takes ``consume()`` batches apart: per batch, columns are pulled out with one C-level
    ``map`` each and range checks are done per run of one partition, not per record."""

    def __init__(self, consumer: Any, settings: Settings, ranges: list[PartitionRange],
                 emit: Callable[[Chunk], None], chunk_records: int) -> None:
        self.consumer, self.settings, self.emit, self.size = consumer, settings, emit, chunk_records
        self.todo = {r.partition: r for r in ranges if r.count > 0}
        self.next_offset = {p: r.start for p, r in self.todo.items()}
        self.pending = {p: Chunk(p) for p in self.todo}
        self.count = self.bytes = 0

    def take(self, msgs: list[Any]) -> int:
        """Keep the batch's records that are planned and new; return how many."""
        from confluent_kafka import Message

        if not msgs:
            return 0
        errs = list(map(Message.error, msgs))
        if errs.count(None) != len(errs):
            msgs = _without_errors(msgs, errs, self.settings)
        # Records (not errors) always carry a partition and an offset.
        parts = cast("list[int]", list(map(Message.partition, msgs)))
        offs = cast("list[int]", list(map(Message.offset, msgs)))
        got = 0
        for p, a, b in _runs(parts):
            r = self.todo.get(p)
            if r is None:
                continue
            keep = _keep(offs, a, b, self.next_offset[p], r.end)
            if not keep:
                continue
            if isinstance(keep, range):
                picked, offsets = msgs[keep.start:keep.stop], offs[keep.start:keep.stop]
            else:
                picked, offsets = [msgs[i] for i in keep], [offs[i] for i in keep]
            values = list(map(Message.value, picked))
            buf = self.pending[p]
            buf.offsets += offsets
            buf.stamps += map(_second, map(Message.timestamp, picked))
            buf.keys += map(Message.key, picked)
            buf.values += values
            got += len(picked)
            self.bytes += sum(map(len, filter(None, values)))
            self.next_offset[p] = offsets[-1] + 1
            if self.next_offset[p] >= r.end:
                self.finish(p)
            elif len(buf) >= self.size:
                self.pending[p] = _cut(buf, self.size, self.emit)
        self.count += got
        return got

    def finish(self, p: int) -> None:
        """Partition ``p`` is read to its planned end: stop fetching it, hand on the rest."""
        from confluent_kafka import TopicPartition

        del self.todo[p]
        self.consumer.incremental_unassign([TopicPartition(self.settings.topic, p)])
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


def _without_errors(msgs: list[Any], errs: list[Any], settings: Settings) -> list[Any]:
    """The batch's records; a fatal or authorization error ends the read. Others (partition
    EOF, transient broker errors) are librdkafka's to retry."""
    from confluent_kafka import KafkaError

    for err in errs:
        if err is not None and (err.fatal() or err.code() == KafkaError.TOPIC_AUTHORIZATION_FAILED):
            raise WindowError(f"reading {settings.topic!r} failed: "
                              f"{scrub(err.str(), settings.secrets())}")
    return [m for m, err in zip(msgs, errs, strict=True) if err is None]


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
