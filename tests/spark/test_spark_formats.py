"""The RAW format through Spark, and ranges that retention deleted after the plan was pinned
(issue: beyond one machine)."""

from __future__ import annotations

import time
import warnings
from datetime import UTC, datetime, timedelta

import pytest
from confluent_kafka import Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from polars.testing import assert_frame_equal

import tu_analytics.spark as tus
from tu_analytics import _kafka, _pipeline
from tu_analytics._pipeline import Batch, ConsumeError
from tu_analytics.errors import WindowError
from tu_analytics.spark._plan import TaskRange
from tu_analytics.spark._schema import conform
from tu_analytics.spark._task import raise_if_reset


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
    """(key, value) of ``n`` records of the customer's topic, read with the project's seam."""
    consumer = _kafka.KafkaConsumer(settings)
    end = int(time.time() * 1000)
    chunks: list = []
    try:
        plan = _pipeline.plan(consumer, end - 2 * 86_400_000, end, 0, timeout=10)
        _pipeline.read(consumer, plan.ranges, chunks.append, stall_timeout=60)
    finally:
        consumer.close()
    pairs = [kv for c in chunks for kv in zip(c.keys, c.values, strict=True)]
    assert len(pairs) >= n
    return pairs[:n]


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


def test_offset_reset_mid_read_is_the_retention_error(sandbox) -> None:
    """librdkafka's _AUTO_OFFSET_RESET (retention deleted the next offset while a task read)
    raises the clear error instead of being skipped until the stall timeout."""
    settings = sandbox.settings()
    rng = TaskRange(partition=1, start=10, end=20, low=0)
    raise_if_reset(Batch(errors=[ConsumeError("_PARTITION_EOF", "end")]), settings, rng)
    with pytest.raises(WindowError, match=r"from 10 of partition 1 .* deleted by the topic's"):
        raise_if_reset(Batch(errors=[ConsumeError("_AUTO_OFFSET_RESET", "gone")]), settings, rng)
