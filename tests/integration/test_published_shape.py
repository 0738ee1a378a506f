"""The sandbox follows the published shape on the real services: the registry's global
BACKWARD rule accepts insights v1 -> v2 -> v3 (and refuses a change Avro cannot resolve), the
topic carries all three versions, and its stream has resends and timestamps that go back."""

from __future__ import annotations

import copy
import json
import time
from collections import Counter
from collections.abc import Iterator

import pytest
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.error import SchemaRegistryError
from kafka_helpers import read_all, sr_auth

from tu_analytics.sandbox.schemas.generate import machine_insights, value_field


@pytest.fixture
def registry(sandbox) -> Iterator[SchemaRegistryClient]:
    env = sandbox.env(admin=True)
    with SchemaRegistryClient({"url": env["TU_SCHEMA_REGISTRY_URL"], "timeout": 20,
                               "basic.auth.user.info": sr_auth(env)}) as client:
        yield client


def test_backward_rule_accepts_v1_v2_v3_and_refuses_what_avro_cannot_resolve(registry) -> None:
    subject = f"published-shape-{time.monotonic_ns()}-value"
    ids = [registry.register_schema(subject, Schema(json.dumps(machine_insights(v)), "AVRO"))
           for v in (1, 2, 3)]
    assert len(set(ids)) == 3
    assert registry.get_latest_version(subject).version == 3
    # Control: an insight's value changed from double to string is not BACKWARD compatible.
    bad = copy.deepcopy(machine_insights(3))
    rec = next(f for f in bad["fields"] if f["name"] == "EngineFuelRate")["type"][1]
    assert rec["fields"][0]["name"] == value_field("EngineFuelRate")
    rec["fields"][0]["type"] = ["null", "string"]
    with pytest.raises(SchemaRegistryError) as info:
        registry.register_schema(subject, Schema(json.dumps(bad), "AVRO"))
    assert info.value.http_status_code in (409, 422)


def test_topic_has_three_versions_resends_and_backward_timestamps(sandbox) -> None:
    env = sandbox.env()
    records = read_all(env, env["TU_TOPIC"])
    ids = Counter(int.from_bytes(value[1:5], "big") for _, _, _, _, value in records)
    wanted = {sandbox.state.schema_ids[f"insights.{v}"] for v in (1, 2, 3)}
    assert wanted <= set(ids)
    assert all(ids[i] > 100 for i in wanted)
    copies = Counter((key, value) for _, _, _, key, value in records)
    resent = sum(n - 1 for n in copies.values())
    assert 0.001 < resent / len(records) < 0.02
    steps = 0
    for p in {p for p, *_ in records}:
        top = 0
        for _, _, ts, _, _ in sorted((r for r in records if r[0] == p), key=lambda r: r[1]):
            steps += ts < top
            top = max(top, ts)
    assert 0.001 < steps / len(records) < 0.05
