"""The sandbox is locked down (issue 15) and speaks TLS (issue 10), on the session's sandbox:
no listener lets an unauthenticated client in, every file is private, and a SASL_SSL client
with the sandbox's CA reads what a plaintext one reads."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaException, TopicPartition
from confluent_kafka.admin import (
    AclBindingFilter,
    AclOperation,
    AclPermissionType,
    AdminClient,
    ResourcePatternType,
    ResourceType,
)

from tu_analytics.sandbox._jars import find_java, kafka_libs
from tu_analytics.sandbox._state import cache_dir, load_state

# A plain Java admin client: librdkafka has no `bootstrap.controllers`, Kafka's own client has.
CONTROLLER_ACLS = """
import java.util.Properties;
import java.util.concurrent.TimeUnit;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.common.acl.AclBindingFilter;

public class ControllerAcls {
    public static void main(String[] args) throws Exception {
        Properties p = new Properties();
        p.put("bootstrap.controllers", args[0]);
        p.put("request.timeout.ms", "8000");
        p.put("default.api.timeout.ms", "10000");
        if (args.length == 3) {
            p.put("security.protocol", "SASL_PLAINTEXT");
            p.put("sasl.mechanism", "PLAIN");
            String user = args[1], pw = System.getenv("PW");
            p.put("sasl.jaas.config", "org.apache.kafka.common.security.plain.PlainLoginModule "
                + "required username=\\"" + user + "\\" password=\\"" + pw + "\\";");
        }
        try (Admin admin = Admin.create(p)) {
            var acls = admin.describeAcls(AclBindingFilter.ANY).values();
            System.out.println("ACLS " + acls.get(12, TimeUnit.SECONDS).size());
        } catch (Exception e) {
            System.out.println("FAILED " + e);
            System.exit(1);
        }
    }
}
"""


def _controller_acls(tmp_path: Path, address: str, password: str | None):
    src = tmp_path / "ControllerAcls.java"
    src.write_text(CONTROLLER_ACLS)
    argv = [find_java(17), "-cp", f"{kafka_libs(cache_dir())}/*", str(src), address]
    if password is not None:
        argv += ["operator", "x"]
    return subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
        env={**os.environ, "PW": password or ""},
    )


def test_controller_port_refuses_a_client_without_credentials(sandbox, tmp_path: Path) -> None:
    state = load_state(sandbox.root)
    address = f"127.0.0.1:{state.ports['controller']}"
    anonymous = _controller_acls(tmp_path, address, None)
    assert anonymous.returncode == 1, anonymous.stdout
    assert "FAILED" in anonymous.stdout
    assert "ACLS" not in anonymous.stdout
    # The same probe with the operator's credentials lists them: the refusal is the listener's.
    operator = _controller_acls(tmp_path, address, state.operator.kafka_password)
    assert operator.returncode == 0, operator.stdout
    assert int(operator.stdout.split("ACLS ")[1]) > 0
    # librdkafka speaking PLAINTEXT to that port gets nothing either.
    client = AdminClient({"bootstrap.servers": address, "log_level": 0})
    any_acl = AclBindingFilter(
        ResourceType.ANY,
        None,
        ResourcePatternType.ANY,
        None,
        None,
        AclOperation.ANY,
        AclPermissionType.ANY,
    )
    with pytest.raises(KafkaException):
        client.describe_acls(any_acl, request_timeout=8).result()


def test_every_sandbox_file_and_directory_is_private(sandbox) -> None:
    root = Path(sandbox.root)
    dirs, files = 0, 0
    bad = []
    for dirpath, _, filenames in os.walk(root):
        dirs += 1
        if stat.S_IMODE(os.stat(dirpath).st_mode) != 0o700:
            bad.append(f"{dirpath} {oct(os.stat(dirpath).st_mode)}")
        for name in filenames:
            path = Path(dirpath, name)
            files += 1
            mode = stat.S_IMODE(path.lstat().st_mode)
            if mode != 0o600:
                bad.append(f"{path} {oct(mode)}")
    assert bad == []
    # What was checked includes what the broker created while running.
    assert list((root / "kafka" / "data").glob("trackunit.*/*.log"))
    assert list((root / "kafka" / "data").glob("*/*.index"))
    assert dirs > 10
    assert files > 50


def _tls_env(sandbox) -> dict[str, str]:
    out = subprocess.run(
        [sys.executable, "-m", "tu_analytics.cli", "sandbox", "env", "--tls"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**os.environ, "TU_SANDBOX_DIR": str(sandbox.root)},
    )
    return dict(line.removeprefix("export ").split("=", 1) for line in out.stdout.splitlines())


def _read_window(env: dict[str, str], start_ms: int, ends: dict[int, int], **extra: str):
    conf = {
        "bootstrap.servers": env["TU_BOOTSTRAP_SERVERS"],
        "security.protocol": env["TU_SECURITY_PROTOCOL"],
        "sasl.mechanisms": "PLAIN",
        "sasl.username": env["TU_SASL_USERNAME"],
        "sasl.password": env["TU_SASL_PASSWORD"],
        "group.id": f"{env['TU_SASL_USERNAME']}.tls-test",
        "enable.auto.commit": False,
        "log_level": 0,
        **extra,
    }
    topic = env["TU_TOPIC"]
    c = Consumer(conf)
    try:
        tps = [TopicPartition(topic, p, start_ms) for p in ends]
        starts = c.offsets_for_times(tps, timeout=10)
        c.assign(starts)
        got, todo = [], {p for p in ends}
        while todo:
            for m in c.consume(5000, timeout=1):
                if m.error() is None and m.offset() < ends[m.partition()]:
                    got.append((m.partition(), m.offset(), m.key(), m.value()))
            todo = {tp.partition for tp in c.position(tps) if tp.offset < ends[tp.partition]}
        return sorted(got)
    finally:
        c.close()


def test_sasl_ssl_listener_serves_a_window_with_the_ca_only(sandbox) -> None:
    tls = _tls_env(sandbox)
    assert tls["TU_SECURITY_PROTOCOL"] == "SASL_SSL"
    state = load_state(sandbox.root)
    assert tls["TU_BOOTSTRAP_SERVERS"] == f"127.0.0.1:{state.ports['kafka_tls']}"
    assert Path(tls["TU_SSL_CA_LOCATION"]).is_file()
    plain = sandbox.env()
    start_ms = int(time.time() * 1000) - 30 * 60 * 1000
    probe = Consumer(
        {
            "bootstrap.servers": plain["TU_BOOTSTRAP_SERVERS"],
            "log_level": 0,
            "security.protocol": "SASL_PLAINTEXT",
            "sasl.mechanisms": "PLAIN",
            "sasl.username": plain["TU_SASL_USERNAME"],
            "sasl.password": plain["TU_SASL_PASSWORD"],
            "group.id": "x",
        }
    )
    try:
        ends = {
            p: probe.get_watermark_offsets(TopicPartition(plain["TU_TOPIC"], p), timeout=10)[1]
            for p in range(3)
        }
    finally:
        probe.close()
    over_tls = _read_window(tls, start_ms, ends, **{"ssl.ca.location": tls["TU_SSL_CA_LOCATION"]})
    assert len(over_tls) > 0
    assert over_tls == _read_window(plain, start_ms, ends)
    # Without the CA the broker's certificate is not trusted: no metadata, no records.
    t = time.monotonic()
    stranger = Consumer(
        {
            **{"bootstrap.servers": tls["TU_BOOTSTRAP_SERVERS"]},
            "security.protocol": "SASL_SSL",
            "sasl.mechanisms": "PLAIN",
            "sasl.username": tls["TU_SASL_USERNAME"],
            "sasl.password": tls["TU_SASL_PASSWORD"],
            "group.id": "y",
            "log_level": 0,
        }
    )
    try:
        with pytest.raises(KafkaException):
            stranger.list_topics(tls["TU_TOPIC"], timeout=8)
    finally:
        stranger.close()
    assert time.monotonic() - t < 15


def test_murmur2_reference_is_kafkas_java_hash() -> None:
    # Values of org.apache.kafka.common.utils.Utils.murmur2 (Kafka 4.1.1), signed as in Java:
    # the fault tests' partition check is only as good as this reference.
    from sandbox_checks import java_partition, murmur2

    java = {
        b"21": -973932308,
        b"foobar": -790332482,
        b"a-little-bit-long-string": -985981536,
        b"abc": 479470107,
        b"3f2c1e4a-0000-4000-8000-000000000001": 2038755501,
    }
    for data, signed in java.items():
        assert murmur2(data) == signed & 0xFFFFFFFF
    assert java_partition(b"a-little-bit-long-string", 3) == 2


def test_registry_over_https_with_the_same_ca(sandbox) -> None:
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from kafka_helpers import sr_auth

    tls = _tls_env(sandbox)
    assert tls["TU_SCHEMA_REGISTRY_URL"].startswith("https://127.0.0.1:")
    subject = f"{tls['TU_TOPIC']}-value"
    conf = {"url": tls["TU_SCHEMA_REGISTRY_URL"], "basic.auth.user.info": sr_auth(tls)}
    with SchemaRegistryClient({**conf, "ssl.ca.location": tls["TU_SSL_CA_LOCATION"]}) as sr:
        assert sr.get_latest_version(subject).version >= 1
    with (
        SchemaRegistryClient({**conf, "timeout": 5}) as stranger,
        pytest.raises(Exception, match="CERTIFICATE_VERIFY_FAILED"),
    ):
        stranger.get_latest_version(subject)
