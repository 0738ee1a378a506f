"""The RAW format through Spark, and ranges that retention deleted after the plan was pinned
(issue: beyond one machine)."""

from __future__ import annotations

import time
import warnings
from datetime import UTC, datetime, timedelta

import pytest
from confluent_kafka import KafkaError, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from polars.testing import assert_frame_equal

import tu_analytics.spark as tus
from tu_analytics import _kafka
from tu_analytics.errors import WindowError
from tu_analytics.spark._plan import TaskRange
from tu_analytics.spark._schema import conform
from tu_analytics.spark._task import _NoReset


def _polars(conn, start, end):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return conn.window(start, end, progress=False)


def _as_polars(df, want):
    import polars as pl

    return conform(pl.from_arrow(df.toArrow()), want.schema)


def test_raw_format_equals_polars(spark, sandbox) -> None:
    conn = sandbox.connect(fmt="raw")
    assert conn.settings.topic == sandbox.env(fmt="raw")["TU_TOPIC"]
    end = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    start = end - timedelta(days=2)
    win = _polars(conn, start, end)
    assert win.main.height > 1000
    per_task = max(1, win.main.group_by("partition").len()["len"].min() // 4)
    df = tus.window(spark, conn, start, end, max_records_per_task=per_task)
    assert df.rdd.getNumPartitions() >= 4 * win.main["partition"].n_unique()
    got = _as_polars(df, win.main).sort("partition", "offset")
    assert_frame_equal(got, conform(win.main, win.main.schema).sort("partition", "offset"))
    for name, want in win.long.items():
        long = _as_polars(tus.window(spark, conn, start, end, frame=name,
                                     max_records_per_task=per_task), want)
        assert long.height == want.height, name
        assert_frame_equal(long.sort(long.columns), conform(want, want.schema).sort(want.columns))


def _kafka_conf(env: dict[str, str]) -> dict[str, str]:
    return {"bootstrap.servers": env["TU_BOOTSTRAP_SERVERS"],
            "security.protocol": env["TU_SECURITY_PROTOCOL"], "sasl.mechanisms": "PLAIN",
            "sasl.username": env["TU_SASL_USERNAME"], "sasl.password": env["TU_SASL_PASSWORD"]}


def _some_records(settings, n: int) -> list[tuple[bytes | None, bytes | None]]:
    """(key, value) of ``n`` records of the customer's topic, read with the project's fetch."""
    consumer, errors = _kafka.make_consumer(settings)
    end = int(time.time() * 1000)
    try:
        ranges = _kafka.plan(consumer, errors, settings, end - 2 * 86_400_000, end, 10)
        got = _kafka.fetch(consumer, errors, settings, ranges, start_ms=end - 2 * 86_400_000,
                           end_ms=end, max_bytes=None, stall_timeout=60).records
    finally:
        consumer.close()
    assert got.height >= n
    return list(zip(got["key"].head(n), got["value"].head(n), strict=True))


def _register_like(env: dict[str, str], source_topic: str, topic: str) -> None:
    auth = f"{env['TU_SCHEMA_REGISTRY_USERNAME']}:{env['TU_SCHEMA_REGISTRY_PASSWORD']}"
    src = f"{source_topic}-value"
    with SchemaRegistryClient({"url": env["TU_SCHEMA_REGISTRY_URL"],
                               "basic.auth.user.info": auth}) as client:
        for v in client.get_versions(src):
            text = client.get_version(src, v).schema.schema_str
            client.register_schema(f"{topic}-value", Schema(text, "AVRO"))


def test_range_past_retention_fails_the_job_clearly(spark, sandbox) -> None:
    env = sandbox.env(admin=True)
    customer = sandbox.customers[0]
    topic = f"trackunit.{customer}.spark-retention-{time.monotonic_ns()}"
    admin = AdminClient(_kafka_conf(env))
    admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])[topic].result()
    _register_like(env, env["TU_TOPIC"], topic)
    records = _some_records(sandbox.settings(admin=True), 2000)
    producer = Producer(_kafka_conf(env))
    now = int(time.time() * 1000)
    for i, (key, value) in enumerate(records):
        producer.produce(topic, value, key, partition=i % 2, timestamp=now)
    assert producer.flush(30) == 0
    conn = sandbox.connect(admin=True, topic=topic)
    start, end = (datetime.fromtimestamp(t / 1000, UTC) for t in (now - 1000, now + 1000))
    df = tus.window(spark, conn, start, end, max_records_per_task=300)
    assert df.count() == len(records)  # the pinned plan reads them all while they exist
    admin.delete_records([TopicPartition(topic, 0, 400)])[TopicPartition(topic, 0)].result()
    with pytest.raises(Exception, match="deleted by the topic's retention") as info:
        df.collect()
    text = str(info.value)
    assert "WindowError" in text
    assert "offsets [0, 300) of partition 0" in text or "offsets [300, 400) of partition 0" in text
    # The Polars window planned now starts at the oldest retained offset, and Spark's does too.
    again = tus.window(spark, conn, start, end, max_records_per_task=300)
    assert again.count() == len(records) - 400 == _polars(conn, start, end).main.height


class _Message:
    def __init__(self, err: KafkaError | None) -> None:
        self._err = err

    def error(self) -> KafkaError | None:
        return self._err


class _Consumer:
    def __init__(self, msgs: list[_Message]) -> None:
        self.msgs = msgs

    def consume(self, num_messages: int = 1, timeout: float = -1) -> list[_Message]:
        return self.msgs


def test_offset_reset_mid_read_is_the_retention_error(sandbox) -> None:
    """librdkafka's _AUTO_OFFSET_RESET (retention deleted the next offset while a task read)
    raises the clear error instead of being skipped until the stall timeout."""
    settings = sandbox.settings()
    rng = TaskRange(partition=1, start=10, end=20, low=0)
    ok = _NoReset(_Consumer([_Message(None), _Message(KafkaError(KafkaError._PARTITION_EOF))]),
                  settings, rng)
    assert len(ok.consume(num_messages=5, timeout=0.1)) == 2
    bad = _NoReset(_Consumer([_Message(KafkaError(KafkaError._AUTO_OFFSET_RESET))]),
                   settings, rng)
    with pytest.raises(WindowError, match=r"from 10 of partition 1 .* deleted by the topic's"):
        bad.consume(num_messages=5, timeout=0.1)
