"""The task's half: read one pinned offset range, decode it with the project's own decoder,
and return the frame Spark asked for.

A range is read when the consumer's position reached its end (``_kafka.fetch``'s rule), so
ranges ending in transaction markers complete; a stall raises, which fails the task and lets
Spark retry the same deterministic range rather than return part of it. A range that the
topic's retention deleted after the driver pinned it fails with a :class:`WindowError` that
says so: the task's consumer never resets to another offset (``auto.offset.reset=error``).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import polars as pl

from .. import _kafka
from .._connection import Connection, _Decoding
from .._settings import Settings
from ..errors import WindowError
from ._plan import Job, TaskRange, settings_from


def read_range(job: Job, rng: TaskRange, *, stall_timeout: float = 30.0) -> pl.DataFrame:
    """The ``job.frame`` frame of the records at offsets ``[rng.start, rng.end)`` whose Kafka
    timestamp lies in the job's ``[start, end)``."""
    settings = settings_from(job.settings)
    conn = Connection(settings)
    consumer, errors = _kafka.make_consumer(settings, **{"auto.offset.reset": "error"})
    decoding = _Decoding(conn._registry, job.start_ms, job.end_ms, workers=1)
    ranges = [_kafka.PartitionRange(rng.partition, rng.start, rng.end, rng.low)]
    try:
        check_retained(consumer, settings, rng)
        _kafka.fetch(_NoReset(consumer, settings, rng), errors, settings, ranges,
                     start_ms=job.start_ms, end_ms=job.end_ms, max_bytes=None,
                     stall_timeout=stall_timeout, on_chunk=decoding.submit)
    except BaseException:
        decoding.cancel()
        raise
    finally:
        consumer.close()
    decoded, schemas = decoding.result()
    begin = datetime.fromtimestamp(job.start_ms / 1000, UTC)
    stop = datetime.fromtimestamp(job.end_ms / 1000, UTC)
    wanted = set(job.machines) if job.machines is not None else None
    window = conn._build(decoded, schemas, begin, stop, ranges, wanted)
    return window.errors if job.frame == "errors" else getattr(window, job.frame)


def retention_error(settings: Settings, rng: TaskRange, low: int | None) -> WindowError:
    gone = f"[{rng.start}, {min(low, rng.end)})" if low is not None else f"from {rng.start}"
    return WindowError(
        f"offsets {gone} of partition {rng.partition} of topic {settings.topic!r} were deleted "
        f"by the topic's retention after the window was planned (oldest retained offset now "
        f"{low if low is not None else 'unknown'}); no partial window is returned — plan the "
        "window again (a new spark.window() call) to read what is still retained")


def check_retained(consumer: Any, settings: Settings, rng: TaskRange,
                   timeout: float = 10.0) -> None:
    """Fail clearly when retention already deleted the start of the range."""
    from confluent_kafka import TopicPartition

    low, _ = consumer.get_watermark_offsets(TopicPartition(settings.topic, rng.partition),
                                            timeout=timeout, cached=False)
    if low > rng.start:
        raise retention_error(settings, rng, low)


class _NoReset:
    """The consumer, except that the error librdkafka gives instead of resetting an offset
    retention deleted mid-read (``_AUTO_OFFSET_RESET``) raises at once: ``fetch`` would
    otherwise skip the error and wait out its stall timeout."""

    def __init__(self, consumer: Any, settings: Settings, rng: TaskRange) -> None:
        self._consumer, self._settings, self._rng = consumer, settings, rng

    def __getattr__(self, name: str) -> Any:
        return getattr(self._consumer, name)

    def consume(self, *args: Any, **kwargs: Any) -> list[Any]:
        from confluent_kafka import KafkaError

        msgs: list[Any] = self._consumer.consume(*args, **kwargs)
        for m in msgs:
            err = m.error()
            if err is not None and err.code() == KafkaError._AUTO_OFFSET_RESET:
                raise retention_error(self._settings, self._rng, None)
        return msgs
