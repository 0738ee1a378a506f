"""Test helpers: a plain confluent-kafka reader (the independent reference the tests compare
against) and the environment for a sandbox of a test's own."""

from __future__ import annotations

import os
import time
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition


def _kafka_conf(env: dict[str, str], **extra: object) -> dict[str, object]:
    return {
        "bootstrap.servers": env["TU_BOOTSTRAP_SERVERS"],
        "security.protocol": env["TU_SECURITY_PROTOCOL"],
        "sasl.mechanisms": "PLAIN",
        "sasl.username": env["TU_SASL_USERNAME"],
        "sasl.password": env["TU_SASL_PASSWORD"],
        **extra,
    }


def read_all(env: dict[str, str], topic: str, before_ms: int | None = None):
    """A plain consumer: every record of ``topic`` up to the high watermarks taken now."""
    group = f"{env['TU_SASL_USERNAME']}.test-{time.monotonic_ns()}"
    c = Consumer(_kafka_conf(env, **{"group.id": group, "enable.auto.commit": False}))
    try:
        md = c.list_topics(topic, timeout=10)
        parts = sorted(md.topics[topic].partitions)
        ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts}
        todo = {p for p in parts if ends[p] > 0}
        c.assign([TopicPartition(topic, p, 0) for p in todo])
        out = []
        while todo:
            for m in c.consume(10000, timeout=2):
                if m.error():
                    continue
                p = m.partition()
                if p in todo and m.offset() < ends[p]:
                    ts = m.timestamp()[1]
                    if before_ms is None or ts < before_ms:
                        out.append((p, m.offset(), ts, m.key(), m.value()))
            # Done by position, not by the last offset seen: a range may end in a
            # transaction marker or an aborted record, which are never delivered.
            for tp in c.position([TopicPartition(topic, p) for p in todo]):
                if tp.offset >= ends[tp.partition]:
                    todo.discard(tp.partition)
        return out
    finally:
        c.close()


def sr_auth(env: dict[str, str]) -> str:
    return f"{env['TU_SCHEMA_REGISTRY_USERNAME']}:{env['TU_SCHEMA_REGISTRY_PASSWORD']}"


def isolated_sandbox_env(root: Path, **extra: str) -> dict[str, str]:
    """The environment for a sandbox of one test's own: its directory, free ports, no TU_*."""
    from tu_analytics.sandbox._procs import free_port
    from tu_analytics.sandbox._state import PORT_ENV

    env = {k: v for k, v in os.environ.items() if not k.startswith("TU_")}
    env["TU_SANDBOX_DIR"] = str(root)
    env.update({var: str(free_port()) for var in PORT_ENV.values()})
    env.update(extra)
    return env
