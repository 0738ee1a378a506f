"""The sandbox behaves like the published Streaming API (issue: local sandbox).

Everything here talks to the real broker and registry the session fixture started, with
confluent-kafka's own clients where the contract is theirs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections import defaultdict

import pytest
from confluent_kafka.admin import AdminClient, ConfigResource, ResourceType
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext
from kafka_helpers import _kafka_conf, read_all, sr_auth

import tu_analytics
from tu_analytics.sandbox._state import PLATFORM_TOPICS, customer_topics
from tu_analytics.sandbox.fleet import build_fleet

CLI = [sys.executable, "-m", "tu_analytics.cli"]


def test_customer_reads_own_topics_and_is_refused_others(sandbox) -> None:
    a, b = sandbox.customers[:2]
    for fmt in ("insights", "raw"):
        conn = sandbox.connect(a, fmt)
        win = conn.window(last="30m", progress=False)
        assert win.main.height > 0
        other = sandbox.connect(a, fmt, topic=customer_topics(b)[fmt])
        with pytest.raises(tu_analytics.AuthorizationError, match="TOPIC_AUTHORIZATION_FAILED"):
            other.window(last="30m", progress=False)


def test_wrong_password_fails_within_10s_with_clear_error(sandbox) -> None:
    conn = sandbox.connect(sasl_password="not-the-password-8431")
    t = time.monotonic()
    with pytest.raises(tu_analytics.AuthenticationError) as info:
        conn.window(last="1h", progress=False)
    assert time.monotonic() - t < 10
    text = str(info.value)
    assert "rejected the SASL credentials" in text
    assert "not-the-password-8431" not in text


def test_forwarder_copies_each_customers_machines_only_and_completely(sandbox) -> None:
    admin_env = sandbox.env(admin=True)
    fleet = build_fleet(sandbox.state.seed)
    owner = {m.machine_id.encode(): m.customer for m in fleet.machines}
    cut = int(time.time() * 1000) - 2000
    platform = {fmt: read_all(admin_env, t, before_ms=cut) for fmt, t in PLATFORM_TOPICS.items()}
    deadline = time.monotonic() + 60
    for customer in sandbox.customers:
        env = sandbox.env(customer)
        for fmt, topic in customer_topics(customer).items():
            expected = sorted(
                (k, ts, v) for _, _, ts, k, v in platform[fmt] if owner[k] == customer
            )
            while True:
                got = read_all(env, topic, before_ms=cut)
                assert all(owner[k] == customer for _, _, _, k, _ in got), (
                    "foreign machine on topic"
                )
                if len(got) >= len(expected) or time.monotonic() > deadline:
                    break
                time.sleep(2)  # the forwarder is catching up with the live stream
            assert len(expected) > 0
            assert sorted((k, ts, v) for _, _, ts, k, v in got) == expected


def test_every_record_decodes_with_confluents_deserializer(sandbox) -> None:
    customer = sandbox.customers[0]
    for fmt in ("insights", "raw"):
        env = sandbox.env(customer, fmt)
        with SchemaRegistryClient(
            {
                "url": env["TU_SCHEMA_REGISTRY_URL"],
                "basic.auth.user.info": sr_auth(env),
                "timeout": 20,
            }
        ) as sr:
            deser = AvroDeserializer(sr)
            ctx = SerializationContext(env["TU_TOPIC"], MessageField.VALUE)
            records = read_all(env, env["TU_TOPIC"])
            assert records
            ids = set()
            for _, _, _, key, value in records:
                assert value[0] == 0
                ids.add(int.from_bytes(value[1:5], "big"))
                obj = deser(value, ctx)
                mid = obj["Metadata"]["MachineId"] if fmt == "insights" else obj["machineId"]
                assert mid == key.decode()
        if fmt == "insights":
            # v1, v2 and v3 are all live over the backfill (the published shape's versions).
            assert len(ids) == 3, f"insights topic should carry three schema ids, has {ids}"


def test_registry_refuses_requests_without_credentials(sandbox) -> None:
    url = sandbox.env()["TU_SCHEMA_REGISTRY_URL"] + "/subjects"
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(url, timeout=5)
    assert info.value.code == 401
    info.value.close()


def test_customer_topics_keep_14_days_on_3_partitions(sandbox) -> None:
    admin = AdminClient(_kafka_conf(sandbox.env(admin=True)))
    for customer in sandbox.customers:
        for topic in customer_topics(customer).values():
            res = ConfigResource(ResourceType.TOPIC, topic)
            conf = admin.describe_configs([res])[res].result()
            assert conf["retention.ms"].value == "1209600000"
            assert len(admin.list_topics(topic, timeout=10).topics[topic].partitions) >= 3


def test_counters_never_decrease_in_measurement_time(sandbox) -> None:
    for customer in sandbox.customers:
        win = sandbox.connect(customer).window(last="3d", progress=False)
        counters = [
            "CumulativeOperatingHours",
            "CumulativeIdleHours",
            "CumulativeEngineHours",
            "EngineTotalFuelUsed",
            "TotalVehicleDistance",
        ]
        import polars as pl

        checked = 0
        for c in counters:
            df = (
                win.main.filter(pl.col(c).is_not_null())
                .sort("MachineId", f"{c}_datetime")
                .with_columns(pl.col(c).diff().over("MachineId").alias("d"))
            )
            assert df.filter(pl.col("d") < 0).height == 0, f"{c} decreased for {customer}"
            checked += df.height
        assert checked > 1000


def test_backfill_spans_the_backfill_period(sandbox) -> None:
    win = sandbox.connect().window(last="4d", progress=False)
    ts = win.main["kafka_timestamp"]
    epoch = sandbox.state.epoch_ms / 1000
    first, last = ts.min().timestamp(), ts.max().timestamp()
    assert first - epoch < 3600, "backfill should start at the epoch (3 days back)"
    assert time.time() - last < 600, "and reach the present"
    assert (last - first) > 2.9 * 86400


def _run_cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120):
    return subprocess.run(
        [*CLI, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )


def test_cli_status_json_and_env(sandbox) -> None:
    out = _run_cli("sandbox", "status", "--json")
    assert out.returncode == 0, out.stderr
    st = json.loads(out.stdout)
    assert st["running"] is True
    assert st["broker"].startswith("127.0.0.1:")
    assert "127.0.0.1" in st["registry"]
    assert len(st["customers"]) >= 2
    assert sum(c["machines"] for c in st["customers"]) >= 60
    for c in st["customers"]:
        assert c["topics"] == customer_topics(c["name"])
    env = _run_cli("sandbox", "env", "--format", "raw")
    assert env.returncode == 0
    lines = dict(line.removeprefix("export ").split("=", 1) for line in env.stdout.splitlines())
    for var in (
        "TU_BOOTSTRAP_SERVERS",
        "TU_SECURITY_PROTOCOL",
        "TU_SASL_USERNAME",
        "TU_SASL_PASSWORD",
        "TU_TOPIC",
        "TU_SCHEMA_REGISTRY_URL",
        "TU_SCHEMA_REGISTRY_USERNAME",
        "TU_SCHEMA_REGISTRY_PASSWORD",
    ):
        assert var in lines
    assert lines["TU_TOPIC"].endswith(".raw")
    admin = _run_cli("sandbox", "env", "--admin")
    assert "TU_SASL_USERNAME=operator" in admin.stdout


def test_up_when_already_up_is_idempotent_and_quick(sandbox) -> None:
    t = time.monotonic()
    out = _run_cli("sandbox", "up")
    assert out.returncode == 0, out.stderr
    assert "already up" in out.stderr
    assert time.monotonic() - t < 20


def test_machines_per_customer_and_key_is_machine(sandbox) -> None:
    fleet = build_fleet(sandbox.state.seed)
    by_customer: dict[str, set[str]] = defaultdict(set)
    for m in fleet.machines:
        by_customer[m.customer].add(m.machine_id)
    win = sandbox.connect(sandbox.customers[0]).window(last="1d", progress=False)
    seen = set(win.main["MachineId"].drop_nulls().unique())
    assert seen <= by_customer[sandbox.customers[0]]
    assert len(seen) > 0.8 * len(by_customer[sandbox.customers[0]])
