"""The Kafka side of the live tail: a :class:`~tu_analytics.live.BatchSource` over a topic.

It reads every partition from the end (or from ``start``), decodes each batch with the same
path as windows, and hands the tail flattened Machine Insights ``main`` frames. It is
created and used on the tail's consumer thread only.
"""

from __future__ import annotations

from typing import Any

import polars as pl

from . import _decode, _kafka
from ._registry import Registry
from ._settings import Settings
from .formats import machine_insights as mi


class KafkaBatchSource:
    def __init__(
        self,
        settings: Settings,
        registry: Registry,
        *,
        start_ms: int | None,
        poll_records: int = 5000,
        timeout: float = 10.0,
    ) -> None:
        self._settings = settings
        self._registry = registry
        self._start_ms = start_ms
        self._poll_records = poll_records
        self._timeout = timeout
        self._consumer: Any = None
        self.errors_seen = 0

    def _open(self) -> Any:
        from confluent_kafka import OFFSET_END, TopicPartition

        consumer, errors = _kafka.make_consumer(self._settings)
        topic = self._settings.topic
        parts = _kafka.describe_topic(consumer, errors, self._settings, self._timeout)
        if self._start_ms is None:
            tps = [TopicPartition(topic, p, OFFSET_END) for p in parts]
        else:
            tps = consumer.offsets_for_times(
                [TopicPartition(topic, p, self._start_ms) for p in parts], timeout=self._timeout
            )
            tps = [
                TopicPartition(topic, tp.partition, tp.offset if tp.offset >= 0 else OFFSET_END)
                for tp in tps
            ]
        consumer.assign(tps)
        return consumer

    def poll(self, timeout: float) -> pl.DataFrame | None:
        if self._consumer is None:
            self._consumer = self._open()
        msgs = self._consumer.consume(num_messages=self._poll_records, timeout=timeout)
        rows = [m for m in msgs if m.error() is None]
        if not rows:
            return None
        records = pl.DataFrame(
            {
                "partition": pl.Series([m.partition() for m in rows], dtype=pl.Int32),
                "offset": pl.Series([m.offset() for m in rows], dtype=pl.Int64),
                "kafka_timestamp": pl.Series([m.timestamp()[1] for m in rows], dtype=pl.Int64).cast(
                    pl.Datetime("ms", "UTC")
                ),
                "key": pl.Series([m.key() for m in rows], dtype=pl.Binary),
                "value": pl.Series([m.value() for m in rows], dtype=pl.Binary),
            }
        )
        schemas = self._registry.schemas(_decode.schema_ids(records["value"]))
        decoded = _decode.decode(records, schemas)
        self.errors_seen += decoded.errors.height
        if not decoded.records.height:
            return None
        return mi.flatten(decoded.records).main

    def close(self) -> None:
        if self._consumer is not None:
            self._consumer.close()
            self._consumer = None
