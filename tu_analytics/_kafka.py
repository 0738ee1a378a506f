"""Consumers, window planning and the fetch loop.

A window is planned before anything is read: per partition, the first offset at or after
``start`` and the first at or after ``end`` (``offsets_for_times``), with the end capped at
the high watermark taken when the call starts, so a window on a live topic always
finishes. The fetch loop then reads exactly those offset ranges and hands back columns
(partition, offset, timestamp, key, value); decoding happens elsewhere.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

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
            md = consumer.list_topics(topic, timeout=min(1.0, max(0.1, deadline - time.monotonic())))
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
                raise TopicNotFoundError(f"topic {topic!r} does not exist on {settings.bootstrap_servers}")
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
    marks = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout, cached=False)
             for p in parts}

    def lookup(ts: int) -> dict[int, int]:
        found = consumer.offsets_for_times([TopicPartition(topic, p, ts) for p in parts], timeout=timeout)
        # -1: no record at or after ts, i.e. the range ends at the high watermark.
        return {tp.partition: (marks[tp.partition][1] if tp.offset < 0 else tp.offset) for tp in found}

    starts, ends = lookup(start_ms), lookup(end_ms)
    return [
        PartitionRange(p, starts[p], min(ends[p], marks[p][1]), marks[p][0]) for p in parts
    ]


@dataclass
class Fetched:
    records: pl.DataFrame  # partition, offset, kafka_timestamp, key, value
    bytes: int


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
) -> Fetched:
    """Read exactly the planned offsets; fail loudly rather than return part of them."""
    from confluent_kafka import KafkaError, TopicPartition

    topic = settings.topic
    todo = {r.partition: r for r in ranges if r.count > 0}
    parts: list[int] = []
    offsets: list[int] = []
    stamps: list[int] = []
    keys: list[bytes | None] = []
    values: list[bytes | None] = []
    total_bytes = 0
    if todo:
        consumer.assign([TopicPartition(topic, p, r.start) for p, r in todo.items()])
    next_offset = {p: r.start for p, r in todo.items()}
    last_progress = time.monotonic()
    while todo:
        msgs = consumer.consume(num_messages=20000, timeout=0.5)
        got = 0
        for m in msgs:
            err = m.error()
            if err is not None:
                if err.code() == KafkaError._PARTITION_EOF:
                    continue
                if err.fatal() or err.code() in (KafkaError.TOPIC_AUTHORIZATION_FAILED,):
                    raise WindowError(f"reading {topic!r} failed: {scrub(err.str(), settings.secrets())}")
                continue
            p = m.partition()
            r = todo.get(p)
            off = m.offset()
            if r is None or off >= r.end or off < next_offset[p]:
                continue
            next_offset[p] = off + 1
            value = m.value()
            parts.append(p)
            offsets.append(off)
            stamps.append(m.timestamp()[1])
            keys.append(m.key())
            values.append(value)
            got += 1
            if value is not None:
                total_bytes += len(value)
            if off + 1 >= r.end:
                del todo[p]
                consumer.incremental_unassign([TopicPartition(topic, p)])
        if got:
            last_progress = time.monotonic()
            if on_progress:
                on_progress(got)
            if max_bytes is not None and total_bytes > max_bytes:
                raise WindowTooLargeError(
                    f"window exceeds max_bytes={max_bytes:,} after {len(offsets):,} records; "
                    "narrow the range or raise max_bytes"
                )
        else:
            # Compacted/aborted offsets leave holes; a partition ends at its planned end
            # even when the last offsets hold no record.
            for p, r in list(todo.items()):
                if consumer.position([TopicPartition(topic, p)])[0].offset >= r.end:
                    del todo[p]
            auth = errors.auth_failure()
            if auth:
                raise AuthenticationError(f"the broker rejected the credentials mid-window: {auth}")
            if todo and time.monotonic() - last_progress > stall_timeout:
                missing = sum(r.end - next_offset[p] for p, r in todo.items())
                raise WindowError(
                    f"no data from {settings.bootstrap_servers} for {stall_timeout:.0f} s with "
                    f"{missing:,} planned records still unread ({errors.last()}); no partial "
                    "window is returned — retry when the broker is reachable"
                )
    frame = pl.DataFrame(
        {
            "partition": pl.Series(parts, dtype=pl.Int32),
            "offset": pl.Series(offsets, dtype=pl.Int64),
            "kafka_timestamp": pl.Series(stamps, dtype=pl.Int64).cast(pl.Datetime("ms", "UTC")),
            "key": pl.Series(keys, dtype=pl.Binary),
            "value": pl.Series(values, dtype=pl.Binary),
        }
    )
    # Offsets were planned from timestamps; keep exactly the records inside [start, end).
    start_dt = pl.lit(start_ms).cast(pl.Datetime("ms", "UTC"))
    end_dt = pl.lit(end_ms).cast(pl.Datetime("ms", "UTC"))
    frame = frame.filter((pl.col("kafka_timestamp") >= start_dt) & (pl.col("kafka_timestamp") < end_dt))
    return Fetched(frame.sort("partition", "offset"), total_bytes)
