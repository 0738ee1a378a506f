"""The task's half: read one pinned offset range, decode it with the project's own decoder,
and return the frame Spark asked for.

A range is read when the consumer's position reached its end (``_kafka.fetch``'s rule), so
ranges ending in transaction markers complete; a stall raises, which fails the task and lets
Spark retry the same deterministic range rather than return part of it.
"""

from __future__ import annotations

from datetime import UTC, datetime

import polars as pl

from .. import _kafka
from .._connection import Connection, _Decoding
from ._plan import Job, TaskRange, settings_from


def read_range(job: Job, rng: TaskRange, *, stall_timeout: float = 30.0) -> pl.DataFrame:
    """The ``job.frame`` frame of the records at offsets ``[rng.start, rng.end)`` whose Kafka
    timestamp lies in the job's ``[start, end)``."""
    settings = settings_from(job.settings)
    conn = Connection(settings)
    consumer, errors = _kafka.make_consumer(settings)
    decoding = _Decoding(conn._registry, job.start_ms, job.end_ms, workers=1)
    ranges = [_kafka.PartitionRange(rng.partition, rng.start, rng.end, rng.low)]
    try:
        _kafka.fetch(consumer, errors, settings, ranges, start_ms=job.start_ms,
                     end_ms=job.end_ms, max_bytes=None, stall_timeout=stall_timeout,
                     on_chunk=decoding.submit)
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
