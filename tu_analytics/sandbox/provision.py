"""Topics, ACLs and schemas: what Trackunit sets up for each Streaming API customer.

Per customer: one topic per format (``trackunit.<customer>.machine-insights`` and ``.raw``),
3 partitions, 14-day retention; a SASL user whose ACLs allow reading only those topics and
consumer groups under ``<customer>.``; a read-only registry user. The platform topics that
the simulator writes and the forwarder reads are the operator's alone.
"""

from __future__ import annotations

import time
from importlib import resources
from typing import Any

from confluent_kafka.admin import (
    AclBinding,
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    NewTopic,
    ResourcePatternType,
    ResourceType,
)
from confluent_kafka.error import KafkaException

from ..errors import SandboxError
from ._state import (
    CUSTOMER_PARTITIONS,
    OPERATOR,
    PLATFORM_TOPICS,
    RETENTION_MS,
    State,
    customer_topics,
)


def operator_kafka_config(state: State) -> dict[str, Any]:
    return {
        "bootstrap.servers": state.bootstrap,
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanisms": "PLAIN",
        "sasl.username": OPERATOR,
        "sasl.password": state.operator.kafka_password,
    }


def operator_registry_config(state: State) -> dict[str, Any]:
    return {
        "url": state.registry_url,
        "basic.auth.user.info": f"{OPERATOR}:{state.operator.registry_password}",
    }


def schema_text(name: str) -> str:
    return resources.files("tu_analytics.sandbox.schemas").joinpath(name).read_text()


def admin(state: State) -> AdminClient:
    # log_level 3: librdkafka's informational chatter (queue purges on close) stays out of
    # the progress output; errors still show.
    return AdminClient({**operator_kafka_config(state), "log_level": 3})


def wait_broker_ready(state: State, timeout: float = 60) -> None:
    client = admin(state)
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            md = client.list_topics(timeout=3)
            if md.brokers:
                return
        except KafkaException as exc:
            last = exc
        time.sleep(0.5)
    raise SandboxError(f"the broker did not answer the operator within {timeout:.0f} s: {last}")


def create_topics(state: State) -> None:
    client = admin(state)
    existing = set(client.list_topics(timeout=10).topics)
    config = {"retention.ms": str(RETENTION_MS), "message.timestamp.type": "CreateTime"}
    # One partition per platform topic: the forwarder then sees records in receipt order and
    # each customer partition gets non-decreasing timestamps (the receipt order).
    wanted = [
        NewTopic(t, num_partitions=1, replication_factor=1, config=config)
        for t in PLATFORM_TOPICS.values()
    ]
    for customer in state.customers:
        wanted += [
            NewTopic(t, num_partitions=CUSTOMER_PARTITIONS, replication_factor=1, config=config)
            for t in customer_topics(customer).values()
        ]
    todo = [t for t in wanted if t.topic not in existing]
    if not todo:
        return
    for topic, fut in client.create_topics(todo, operation_timeout=30).items():
        try:
            fut.result()
        except KafkaException as exc:
            if "TOPIC_ALREADY_EXISTS" not in str(exc):
                raise SandboxError(f"creating topic {topic} failed: {exc}") from exc


def _acls(state: State) -> list[AclBinding]:
    out: list[AclBinding] = []
    for customer in state.customers:
        principal = f"User:{customer}"
        for topic in customer_topics(customer).values():
            for op in (AclOperation.READ, AclOperation.DESCRIBE, AclOperation.DESCRIBE_CONFIGS):
                out.append(
                    AclBinding(
                        ResourceType.TOPIC,
                        topic,
                        ResourcePatternType.LITERAL,
                        principal,
                        "*",
                        op,
                        AclPermissionType.ALLOW,
                    )
                )
        out.append(
            AclBinding(
                ResourceType.GROUP,
                f"{customer}.",
                ResourcePatternType.PREFIXED,
                principal,
                "*",
                AclOperation.READ,
                AclPermissionType.ALLOW,
            )
        )
    return out


def create_acls(state: State, timeout: float = 30) -> None:
    client = admin(state)
    wanted = _acls(state)
    for binding, fut in client.create_acls(wanted).items():
        try:
            fut.result()
        except KafkaException as exc:
            raise SandboxError(f"creating ACL {binding} failed: {exc}") from exc
    # ACL writes go through the controller; wait until the broker serves them.
    anything: Any = None  # None matches any name, principal and host in a filter
    any_filter = AclBindingFilter(
        ResourceType.ANY,
        anything,
        ResourcePatternType.ANY,
        anything,
        anything,
        AclOperation.ANY,
        AclPermissionType.ANY,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        have = client.describe_acls(any_filter).result()
        if len(have) >= len(wanted):
            return
        time.sleep(0.3)
    raise SandboxError("ACLs were created but not visible within 30 s")


def register_schemas(state: State) -> dict[str, int]:
    """Register every schema of ``SCHEMA_FILES`` (Machine Insights v1-v3, RAW v1), in order,
    under every topic's subject.

    Returns ids as ``{"insights.1": id, ..., "raw.1": id}``. Apicurio hands out
    ids by content, so one schema has one id across subjects (as Confluent's global ids).
    """
    from confluent_kafka.schema_registry import Schema, SchemaRegistryClient

    from .schemas import SCHEMA_FILES

    texts = {key: schema_text(name) for key, name in SCHEMA_FILES.items()}
    topics: dict[str, list[str]] = {
        "insights": [PLATFORM_TOPICS["insights"]],
        "raw": [PLATFORM_TOPICS["raw"]],
    }
    for customer in state.customers:
        for fmt, topic in customer_topics(customer).items():
            topics[fmt].append(topic)
    ids: dict[str, int] = {}
    with SchemaRegistryClient(operator_registry_config(state)) as client:
        for key in texts:
            fmt = key.split(".")[0]
            for topic in topics[fmt]:
                sid = client.register_schema(f"{topic}-value", Schema(texts[key], "AVRO"))
                if ids.setdefault(key, sid) != sid:
                    raise SandboxError(f"registry gave {key} two ids ({ids[key]} and {sid})")
    return ids
