"""The archive's only door into the window pipeline (planning, fetching, decoding).

Everything the archive needs from Kafka, the registry and the decoder goes through here,
so when the pipeline becomes ``plan(settings, start, end, lateness) -> ranges`` and
``read(range) -> batches + errors`` only this module changes. A range is read when the
consumer's position reached its end (``_kafka.fetch``): transaction markers are never
delivered, so "offset end - 1 was seen" would wait forever.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import polars as pl

from .. import _decode, _kafka
from ..formats import Frames, detect_format
from ..formats import machine_insights as mi
from ..formats import raw as raw_format

if TYPE_CHECKING:
    from .._connection import Connection
    from ..window import Window

#: Kafka timestamps are non-negative ms; this end keeps every record of a range.
ALL_TIME_MS = 2**62


@dataclass(frozen=True)
class Range:
    """Offsets ``[start, end)`` of one partition; ``low`` is its low watermark when planned."""

    partition: int
    start: int
    end: int
    low: int


def marks(conn: Connection, timeout: float = 10.0) -> dict[int, tuple[int, int]]:
    """Every partition of the topic -> (low watermark, high watermark), asked now."""
    from confluent_kafka import TopicPartition

    s = conn.settings
    consumer, errors = _kafka.make_consumer(s)
    try:
        parts = _kafka.describe_topic(consumer, errors, s, timeout)
        return {p: consumer.get_watermark_offsets(TopicPartition(s.topic, p), timeout=timeout,
                                                  cached=False) for p in parts}
    finally:
        consumer.close()


def plan(conn: Connection, start_ms: int, end_ms: int, timeout: float = 10.0) -> list[Range]:
    """The window planner: per partition, the offsets of the records received in
    ``[start_ms, end_ms)`` (end capped at the high watermark taken now)."""
    s = conn.settings
    consumer, errors = _kafka.make_consumer(s)
    try:
        got = _kafka.plan(consumer, errors, s, start_ms, end_ms, timeout)
    finally:
        consumer.close()
    return [Range(r.partition, r.start, r.end, r.low) for r in got]


def read(conn: Connection, ranges: list[Range], start_ms: int = 0,
         end_ms: int = ALL_TIME_MS, stall_timeout: float = 30.0) -> Window:
    """Exactly the offsets of ``ranges`` (records with timestamps in ``[start_ms, end_ms)``),
    decoded and flattened into a :class:`Window` as ``conn.window`` would."""
    from .._connection import _Decoding

    s = conn.settings
    planned = [_kafka.PartitionRange(r.partition, r.start, r.end, r.low) for r in ranges]
    decoding = _Decoding(conn._registry, start_ms, end_ms)
    consumer, errors = _kafka.make_consumer(s)
    with _kafka.gc_paused():
        try:
            _kafka.fetch(consumer, errors, s, planned, start_ms=start_ms, end_ms=end_ms,
                         max_bytes=None, stall_timeout=stall_timeout,
                         on_chunk=decoding.submit)
        except BaseException:
            decoding.cancel()
            raise
        finally:
            consumer.close()
        decoded, schemas = decoding.result()
    begin, stop = _dt(start_ms), _dt(min(end_ms, 253402300799000))
    return conn._build(decoded, schemas, begin, stop, planned, None)


def decode(conn: Connection, records: pl.DataFrame) -> Window:
    """Records that never went through Kafka (``partition``, ``offset``, ``kafka_timestamp``,
    ``key``, ``value``; partition/offset may be null) decoded into a :class:`Window`."""
    raw = records["value"].to_list()
    decoded, schemas = _decode.decode_chunk(records, raw, conn._registry.schemas)
    stamps = records["kafka_timestamp"]
    lo = int(stamps.min().timestamp() * 1000) if records.height else 0  # type: ignore[union-attr]
    hi = int(stamps.max().timestamp() * 1000) + 1 if records.height else 1  # type: ignore[union-attr]
    return conn._build(decoded, schemas, _dt(lo), _dt(hi), [], None)


def subject_ids(conn: Connection, fmt: str) -> dict[tuple[str, int], int]:
    """(format, version) -> schema id of every version of the topic's value subject."""
    subject = f"{conn.settings.topic}-value"
    with conn._registry._client() as client:
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
