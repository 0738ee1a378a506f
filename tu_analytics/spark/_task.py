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

import polars as pl

from .. import _kafka, _pipeline
from .._connection import Connection, build_window, read_window
from .._settings import Settings
from ..errors import WindowError
from ._plan import Job, TaskRange, settings_from


def read_range(job: Job, rng: TaskRange, *, stall_timeout: float = 30.0) -> pl.DataFrame:
    """The ``job.frame`` frame of the records at offsets ``[rng.start, rng.end)`` whose Kafka
    timestamp lies in the job's ``[start, end)``."""
    settings = settings_from(job.settings)
    conn = Connection(settings)
    ranges = (_pipeline.PartitionRange(rng.partition, rng.start, rng.end, rng.low),)
    decoded = read_window(settings, ranges, job.start_ms, job.end_ms, registry=conn._registry,
                          consumer=lambda s: _NoReset(s, rng), stall_timeout=stall_timeout)
    now = int(datetime.now(UTC).timestamp() * 1000)
    plan = _pipeline.Plan(settings.topic, job.start_ms, job.end_ms, job.lateness_ms, ranges, now)
    window = build_window(conn, plan, decoded, machines=job.machines)
    return window.errors if job.frame == "errors" else getattr(window, job.frame)


def retention_error(settings: Settings, rng: TaskRange, low: int | None) -> WindowError:
    gone = f"[{rng.start}, {min(low, rng.end)})" if low is not None else f"from {rng.start}"
    return WindowError(
        f"offsets {gone} of partition {rng.partition} of topic {settings.topic!r} were deleted "
        f"by the topic's retention after the window was planned (oldest retained offset now "
        f"{low if low is not None else 'unknown'}); no partial window is returned — plan the "
        "window again (a new spark.window() call) to read what is still retained",
        topic=settings.topic, partition=rng.partition,
        offsets=(rng.start, low if low is not None else rng.start))


class _NoReset(_kafka.KafkaConsumer):
    """The task's consumer: it never resets to another offset (``auto.offset.reset=error``),
    fails at once when retention already deleted the start of its range, and turns the error
    librdkafka gives instead of resetting mid-read (``_AUTO_OFFSET_RESET``) into the same
    clear error, where the read loop would otherwise wait out its stall timeout."""

    def __init__(self, settings: Settings, rng: TaskRange, timeout: float = 10.0) -> None:
        super().__init__(settings, **{"auto.offset.reset": "error"})
        self._rng = rng
        low, _ = self.watermarks(rng.partition, timeout)
        if low > rng.start:
            self.close()
            raise retention_error(settings, rng, low)

    def consume(self, max_records: int, timeout: float) -> _pipeline.Batch:
        batch = super().consume(max_records, timeout)
        raise_if_reset(batch, self.settings, self._rng)
        return batch


def raise_if_reset(batch: _pipeline.Batch, settings: Settings, rng: TaskRange) -> None:
    """librdkafka reports ``_AUTO_OFFSET_RESET`` where retention deleted the next offset of a
    consumer that may not reset: that is the range's retention error."""
    if any(e.code == "_AUTO_OFFSET_RESET" for e in batch.errors):
        raise retention_error(settings, rng, None)
