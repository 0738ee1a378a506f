"""The archive's only door into the window pipeline (planning, fetching, decoding).

Everything the archive needs from Kafka, the registry and the decoder goes through here,
so when the pipeline becomes ``plan(settings, start, end, lateness) -> ranges`` and
``read(range) -> batches + errors`` only this module changes. A range is read when the
consumer's position reached its end (``_pipeline.read``): transaction markers are never
delivered, so "offset end - 1 was seen" would wait forever. Consumers come from the
connection's factory (``_fake.FakeConsumer`` in unit tests).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import polars as pl

from .. import _decode, _pipeline
from ..formats import Frames, detect_format
from ..formats import machine_insights as mi
from ..formats import raw as raw_format

if TYPE_CHECKING:
    from .._connection import Connection
    from ..window import Window

#: Kafka timestamps are non-negative ms; this end keeps every record of a range.
ALL_TIME_MS = 2**62
#: librdkafka settings of a batch's read (the user's own settings win). The window's
#: consumer may queue 256 MB per partition ahead of the read: right for a window, which ends
#: at the topic's end, but a batch ends where the next one starts, and what was fetched past
#: it is dropped unread (parsed, copied and freed: ~15% of the archiver's CPU). A short
#: queue, re-filled 5 ms after it drains rather than 1 s, keeps the fetch just ahead.
READ_AHEAD: dict[str, str] = {
    "queued.max.messages.kbytes": str(16 * 1024),
    "max.partition.fetch.bytes": str(4 * 1024 * 1024),
    "fetch.queue.backoff.ms": "5",
}


@dataclass(frozen=True)
class Range:
    """Offsets ``[start, end)`` of one partition; ``low`` is its low watermark when planned."""

    partition: int
    start: int
    end: int
    low: int


def marks(conn: Connection, timeout: float = 10.0,
          consumer: _pipeline.RecordConsumer | None = None) -> dict[int, tuple[int, int]]:
    """Every partition of the topic -> (low watermark, high watermark), asked now (the high
    one is the last stable offset: nothing past an open transaction is archived). On
    ``consumer`` when given (kept open: a new one costs a connection, ~60 ms)."""
    c = consumer if consumer is not None else conn._open(conn.settings)
    try:
        return {p: c.watermarks(p, timeout) for p in c.partitions(timeout)}
    finally:
        if consumer is None:
            c.close()


def plan(conn: Connection, start_ms: int, end_ms: int, timeout: float = 10.0) -> list[Range]:
    """The window planner (``window()``'s own, with its lateness rule): per partition, the
    offsets that can hold records received in ``[start_ms, end_ms)``."""
    from .._connection import plan_window

    got = plan_window(conn.settings, _dt(start_ms), _dt(end_ms), timeout=timeout,
                      consumer=conn._open)
    return [Range(r.partition, r.start, r.end, r.low) for r in got.ranges]


def read(conn: Connection, ranges: list[Range], start_ms: int = 0,
         end_ms: int = ALL_TIME_MS, stall_timeout: float = 30.0) -> Window:
    """Exactly the offsets of ``ranges`` (records with timestamps in ``[start_ms, end_ms)``),
    decoded and flattened into a :class:`Window` as ``conn.window`` would."""
    from .._connection import build_window, read_window

    planned = tuple(_pipeline.PartitionRange(r.partition, r.start, r.end, r.low)
                    for r in ranges)
    # The user's own librdkafka settings win over the batch's read-ahead.
    batch = replace(conn.settings, extra_kafka={**READ_AHEAD, **conn.settings.extra_kafka})
    decoded = read_window(batch, planned, start_ms, end_ms, registry=conn._registry,
                          consumer=conn._open, stall_timeout=stall_timeout)
    return build_window(conn, _plan(conn, start_ms, end_ms, planned), decoded)


def decode(conn: Connection, records: pl.DataFrame) -> Window:
    """Records that never went through Kafka (``partition``, ``offset``, ``kafka_timestamp``,
    ``key``, ``value``; partition/offset may be null) decoded into a :class:`Window`."""
    from .._connection import build_window

    raw = records["value"].to_list()
    decoded, _ = _decode.decode_chunk(records, raw, conn._registry.schemas)
    stamps = records["kafka_timestamp"]
    lo = int(stamps.min().timestamp() * 1000) if records.height else 0  # type: ignore[union-attr]
    hi = int(stamps.max().timestamp() * 1000) + 1 if records.height else 1  # type: ignore[union-attr]
    return build_window(conn, _plan(conn, lo, hi, ()), decoded)


def _plan(conn: Connection, start_ms: int, end_ms: int,
          ranges: tuple[_pipeline.PartitionRange, ...]) -> _pipeline.Plan:
    now = int(datetime.now(UTC).timestamp() * 1000)
    return _pipeline.Plan(conn.settings.topic, start_ms, end_ms, 0, ranges, now)


def subject_ids(conn: Connection, fmt: str) -> dict[tuple[str, int], int]:
    """(format, version) -> schema id of every version of the topic's value subject."""
    from confluent_kafka.schema_registry import SchemaRegistryClient

    subject = f"{conn.settings.topic}-value"
    conf = conn.settings.registry_config()
    conf.setdefault("timeout", 10)
    with SchemaRegistryClient(conf) as client:
        return {(fmt, int(v)): int(client.get_version(subject, v).schema_id)
                for v in client.get_versions(subject)}


def frames_for(conn: Connection, schema_ids: list[int]) -> Frames:
    """Zero-row frames with exactly the columns a window holding these schema ids has."""
    schemas: Mapping[int, str | None] = conn._registry.schemas(sorted(schema_ids))
    known = [txt for _, txt in sorted(schemas.items()) if txt]
    if not known:
        latest = conn._registry.latest_for_topic(conn.settings.topic)
        known = [latest] if latest else []
    fmt = detect_format(known[0]) if known else (
        "raw" if conn.settings.topic.endswith("raw") else "insights")
    if fmt == "insights":
        return mi.empty_frames(known)
    return raw_format.empty_frames(known)


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)
