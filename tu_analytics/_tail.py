"""The Kafka side of the live tail: a :class:`~tu_analytics.live.BatchSource` over a topic.

It reads every partition from the end, from a time (``start``) or from stored offsets (the
:attr:`KafkaBatchSource.positions` of an earlier tail), decodes each batch with the same
path as windows and hands the tail flattened Machine Insights ``main`` frames. Records that
cannot be decoded go to an errors buffer (:meth:`take_errors`), as in windows. When the
registry or the broker is away it keeps its records and retries with backoff instead of
stopping. It is created and used on the tail's consumer thread only.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping

import polars as pl

from . import _decode
from ._pipeline import Batch, RecordConsumer
from ._registry import SchemaSource
from ._settings import Settings
from .errors import (
    AuthenticationError,
    AuthorizationError,
    ConfigurationError,
    ConnectionError,
    TopicNotFoundError,
    authentication_error,
)
from .formats import machine_insights as mi

#: librdkafka's logical offset "the end of the partition".
OFFSET_END = -1
#: Seconds between attempts while the registry or broker is away (doubling up to the cap).
RETRY_FIRST, RETRY_CAP = 0.5, 10.0


class KafkaBatchSource:
    def __init__(
        self,
        settings: Settings,
        registry: SchemaSource,
        *,
        start_ms: int | None = None,
        start_offsets: Mapping[int, int] | None = None,
        poll_records: int = 5000,
        timeout: float = 10.0,
        consumer: Callable[[Settings], RecordConsumer] | None = None,
    ) -> None:
        from ._kafka import KafkaConsumer

        self._settings, self._registry = settings, registry
        self._start_ms, self._start_offsets = start_ms, dict(start_offsets or {})
        self._poll_records, self._timeout = poll_records, timeout
        self._factory = consumer if consumer is not None else KafkaConsumer
        self._consumer: RecordConsumer | None = None
        self._held: list[pl.DataFrame] = []  # records read but not yet decoded
        self._bad: list[pl.DataFrame] = []
        self._retry_at = 0.0
        self._backoff = RETRY_FIRST
        #: Next offset per partition after the records handed on: pass as ``start=`` to
        #: resume a later tail where this one stopped.
        self.positions: dict[int, int] = {}
        self.errors_seen = 0
        #: The last problem retried (registry or broker away), ``None`` once it passed.
        self.problem: BaseException | None = None

    def _open(self) -> RecordConsumer:
        consumer = self._factory(self._settings)
        try:
            parts = consumer.partitions(self._timeout)
            starts = {p: OFFSET_END for p in parts}
            if self._start_ms is not None:
                found = consumer.offsets_for_times(dict.fromkeys(parts, self._start_ms),
                                                   self._timeout)
                starts.update({p: o for p, o in found.items() if o >= 0})
            starts.update({p: o for p, o in self._start_offsets.items() if p in starts})
            starts.update({p: o for p, o in self.positions.items() if p in starts})
            consumer.assign(starts)
        except BaseException:
            consumer.close()
            raise
        return consumer

    def poll(self, timeout: float) -> pl.DataFrame | None:
        if time.monotonic() < self._retry_at:
            time.sleep(min(timeout, self._retry_at - time.monotonic()))
            return None
        try:
            frame = self._poll(timeout)
        except (AuthenticationError, AuthorizationError, ConfigurationError, TopicNotFoundError):
            raise  # retrying cannot fix credentials or settings
        except ConnectionError as exc:  # registry or broker away: keep the records, retry
            self.problem = exc
            self._retry_at = time.monotonic() + self._backoff
            self._backoff = min(RETRY_CAP, self._backoff * 2)
            return None
        self.problem, self._backoff = None, RETRY_FIRST
        return frame

    def _poll(self, timeout: float) -> pl.DataFrame | None:
        if self._consumer is None:
            self._consumer = self._open()
        if not self._held:
            batch = self._consumer.consume(self._poll_records, timeout)
            self._check(batch)
            if not len(batch):
                return None
            self._held.append(self._records(batch))
        records = pl.concat(self._held)
        schemas = self._registry.schemas(_decode.schema_ids(records["value"]))
        decoded = _decode.decode(records, schemas)
        self._held.clear()
        self._note(decoded)
        if not decoded.records.height:
            return None
        return mi.flatten(decoded.records).main

    def _check(self, batch: Batch) -> None:
        """A fatal consumer error: drop the consumer; the retry opens a new one at the
        positions reached (records already handed on are not read twice)."""
        fatal = [e for e in batch.errors if e.fatal]
        if self._consumer is None or not fatal:
            return
        auth = self._consumer.auth_failure()
        self.close()
        if auth:
            raise authentication_error("broker", self._settings.bootstrap_servers,
                                       self._settings.sasl_username, auth,
                                       topic=self._settings.topic)
        raise ConnectionError(f"the consumer of {self._settings.topic!r} failed: "
                              f"{fatal[0].text}", topic=self._settings.topic,
                              partition=fatal[0].partition)

    def _records(self, batch: Batch) -> pl.DataFrame:
        frame = pl.DataFrame({
            "partition": pl.Series(batch.partitions, dtype=pl.Int32),
            "offset": pl.Series(batch.offsets, dtype=pl.Int64),
            "kafka_timestamp": pl.Series(batch.stamps, dtype=pl.Int64),
            "key": pl.Series(batch.keys, dtype=pl.Binary),
            "value": pl.Series(batch.values, dtype=pl.Binary),
        })
        for p, o in zip(batch.partitions, batch.offsets, strict=True):
            self.positions[p] = o + 1
        if self._start_ms is not None:
            # Catch-up from a time: out-of-order records after the start offset may be older.
            frame = frame.filter(pl.col("kafka_timestamp") >= self._start_ms)
        return frame.with_columns(pl.col("kafka_timestamp").cast(pl.Datetime("ms", "UTC")))

    def _note(self, decoded: _decode.Decoded) -> None:
        if decoded.errors.height:
            self.errors_seen += decoded.errors.height
            self._bad.append(decoded.errors)

    def take_errors(self) -> pl.DataFrame | None:
        """Records that could not be decoded since the last call (partition, offset, raw
        bytes, reason), or ``None``."""
        if not self._bad:
            return None
        out = pl.concat(self._bad, how="diagonal_relaxed")
        self._bad.clear()
        return out

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
