"""Windows and the tail against the real broker where the pipeline seam cannot stand in:
out-of-order timestamps, transactions (markers, aborts, an open one), registry and protocol
mistakes, the memory guard under RLIMIT_AS."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import textwrap
import threading
import time
from datetime import UTC, datetime

import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from kafka_helpers import _kafka_conf, read_all

import tu_analytics
from tu_analytics.errors import (
    AuthenticationError,
    ConfigurationError,
    DecodeWarning,
    RegistryError,
    WindowTooLargeError,
)


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _topic(sandbox, name: str, partitions: int = 3) -> str:
    """A fresh topic with the insights value schema registered under its subject."""
    from tu_analytics.sandbox.provision import operator_registry_config, schema_text

    topic = f"{name}-{time.monotonic_ns()}"
    admin = AdminClient(_kafka_conf(sandbox.env(admin=True)))
    admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)])[
        topic].result()
    with SchemaRegistryClient(operator_registry_config(sandbox.state)) as sr:
        sr.register_schema(f"{topic}-value",
                           Schema(schema_text("machine_insights_v1.avsc"), "AVRO"))
    return topic


@pytest.fixture(scope="module")
def values(sandbox) -> list[tuple[bytes | None, bytes]]:
    """(key, value) of real insights records, to write into test topics."""
    env = sandbox.env(admin=True)
    return [(k, v) for *_, k, v in read_all(env, env["TU_TOPIC"])[:4000] if v is not None]


@pytest.fixture(scope="module")
def disordered(sandbox, values):
    """A topic whose timestamps go back by up to 90 s for ~3% of records, and its contents."""
    topic = _topic(sandbox, "disorder")
    rng = random.Random(20261130)
    now = int(time.time() * 1000)
    t0 = now - 3_600_000
    producer = Producer(_kafka_conf(sandbox.env(admin=True)))
    for i, (key, val) in enumerate(values):
        back = rng.randrange(1000, 90_000) if rng.random() < 0.03 else 0
        producer.produce(topic, val, key, partition=i % 3, timestamp=t0 + i * 800 - back)
    assert producer.flush(30) == 0
    return topic, read_all(sandbox.env(admin=True), topic)


def test_fifty_random_windows_over_out_of_order_timestamps_are_exact(sandbox, disordered) -> None:
    topic, records = disordered
    conn = sandbox.connect(admin=True, topic=topic)
    rng = random.Random(7)
    lo, hi = min(r[2] for r in records), max(r[2] for r in records)
    seen_disorder = 0
    for i in range(50):
        a = rng.randrange(lo - 60_000, hi)
        b = min(hi + 1, a + rng.choice([5_000, 60_000, 300_000, 1_800_000]))
        win = conn.window(_dt(a), _dt(b), progress=False)
        got = list(zip(win.main["partition"], win.main["offset"], strict=True))
        expected = {(p, o) for p, o, ts, _, _ in records if a <= ts < b}
        assert len(got) == len(set(got)), f"window {i} has duplicates"
        assert set(got) == expected, f"window {i} [{a}, {b})"
        seen_disorder = max(seen_disorder, win.spec.max_disorder_ms)
    assert 1000 < seen_disorder < 90_000


def _transactional(sandbox, tid: str) -> Producer:
    p = Producer(_kafka_conf(sandbox.env(admin=True), **{"transactional.id": tid}))
    p.init_transactions(30)
    return p


def _txn(producer: Producer, topic: str, rows, *, commit: bool, partition: int = 0) -> None:
    producer.begin_transaction()
    for ts, (key, val) in rows:
        producer.produce(topic, val, key, partition=partition, timestamp=ts)
    producer.flush(30)
    (producer.commit_transaction if commit else producer.abort_transaction)(30)


@pytest.mark.parametrize("last", ["commit", "abort"])
def test_window_snapshot_and_tail_over_a_range_ending_in_a_marker_or_an_aborted_transaction(
        sandbox, values, last, tmp_path) -> None:
    topic = _topic(sandbox, f"txn-{last}", partitions=1)
    now = int(time.time() * 1000)
    rows = [(now - 60_000 + i * 10, kv) for i, kv in enumerate(values[:300])]
    producer = _transactional(sandbox, f"test-{topic}")
    _txn(producer, topic, rows[:100], commit=True)
    _txn(producer, topic, rows[100:200], commit=False)
    _txn(producer, topic, rows[200:], commit=last == "commit")
    conn = sandbox.connect(admin=True, topic=topic)
    began = time.monotonic()
    win = conn.window(_dt(now - 120_000), _dt(now), progress=False, stall_timeout=60)
    assert time.monotonic() - began < 10
    kept = 200 if last == "commit" else 100
    assert win.main.height == kept
    assert sorted(win.main["offset"].to_list())[-1] < win.spec.offsets[0][1]
    back = tu_analytics.load_snapshot(win.save(tmp_path / "snap"))
    assert back.spec == win.spec
    assert back.main.height == kept
    tail = conn.tail(start=_dt(now - 120_000))
    with tail:
        deadline = time.monotonic() + 20
        while tail.stats.records < kept and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(1)
    assert tail.stats.records == kept
    assert tail.error is None


def test_open_transaction_holds_coverage_back_and_returns_promptly(sandbox, values) -> None:
    topic = _topic(sandbox, "txn-open", partitions=1)
    now = int(time.time() * 1000)
    producer = _transactional(sandbox, f"test-{topic}")
    _txn(producer, topic, [(now - 50_000 + i, kv) for i, kv in enumerate(values[:50])],
         commit=True)
    producer.begin_transaction()
    for i, (key, val) in enumerate(values[50:80]):
        producer.produce(topic, val, key, partition=0, timestamp=now - 20_000 + i)
    producer.flush(30)
    try:
        began = time.monotonic()
        win = sandbox.connect(admin=True, topic=topic).window(
            _dt(now - 60_000), _dt(now), progress=False, stall_timeout=60)
        assert time.monotonic() - began < 10
        assert win.main.height == 50
        assert win.spec.covered_end is not None
        assert win.spec.covered_end < win.spec.end
    finally:
        producer.abort_transaction(30)


def test_registry_url_without_the_confluent_api_is_one_clear_error(sandbox) -> None:
    url = sandbox.env()["TU_SCHEMA_REGISTRY_URL"]
    base = url.split("/apis/")[0]
    for wrong in (base, f"{base}/apis/registry/v3"):
        began = time.monotonic()
        with pytest.raises(ConfigurationError) as info:
            sandbox.connect(schema_registry_url=wrong).window(last="10m", progress=False)
        assert time.monotonic() - began < 10
        assert "/apis/ccompat/v7" in str(info.value)
        assert info.value.url == wrong.rstrip("/")


def test_wrong_registry_password_names_url_and_user_without_bytes_suffix(sandbox) -> None:
    env = sandbox.env()
    conn = sandbox.connect(schema_registry_password="wrong-pw-123")
    with pytest.raises(AuthenticationError) as info:
        conn.window(last="10m", progress=False)
    text = str(info.value)
    assert "b''" not in text
    assert "wrong-pw-123" not in text
    assert env["TU_SCHEMA_REGISTRY_URL"].rstrip("/") in text
    assert info.value.user == env["TU_SCHEMA_REGISTRY_USERNAME"]


def test_a_hanging_registry_fails_within_ten_seconds(sandbox) -> None:
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:  # accept and never answer
        srv.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(srv.accept()[0])
            except TimeoutError:
                continue

    server = threading.Thread(target=accept, daemon=True)
    server.start()
    try:
        url = f"http://127.0.0.1:{srv.getsockname()[1]}/apis/ccompat/v7"
        began = time.monotonic()
        with pytest.raises(RegistryError):
            sandbox.connect(schema_registry_url=url).window(last="1h", progress=False)
        assert time.monotonic() - began < 10
    finally:
        stop.set()
        server.join()
        for s in held:
            s.close()
        srv.close()


def test_tls_client_at_the_plaintext_listener_names_the_mixup(sandbox) -> None:
    began = time.monotonic()
    with pytest.raises(ConfigurationError, match="SASL_PLAINTEXT") as info:
        sandbox.connect(security_protocol="SASL_SSL").window(last="10m", progress=False)
    assert time.monotonic() - began < 10
    assert "plaintext" in str(info.value)


def test_tail_keeps_bad_records_and_resumes_from_its_positions(sandbox, values) -> None:
    topic = _topic(sandbox, "tail-bad", partitions=1)
    producer = Producer(_kafka_conf(sandbox.env(admin=True)))
    now = int(time.time() * 1000)
    for i, (key, val) in enumerate(values[:40]):
        producer.produce(topic, val if i % 10 else b"\x00\x00\x00\x00\x01junk", key,
                         partition=0, timestamp=now + i)
    assert producer.flush(30) == 0
    conn = sandbox.connect(admin=True, topic=topic)
    with pytest.warns(DecodeWarning):
        conn.window(_dt(now), _dt(now + 100), progress=False)
    tail = conn.tail(start=_dt(now - 1000))
    with tail:
        deadline = time.monotonic() + 20
        while tail.stats.records + tail.stats.bad_records < 40 and time.monotonic() < deadline:
            time.sleep(0.2)
    assert (tail.stats.records, tail.stats.bad_records) == (36, 4)
    assert sorted(tail.bad_records()["offset"].to_list()) == [0, 10, 20, 30]
    positions = tail.positions
    assert positions == {0: 40}
    for i, (key, val) in enumerate(values[40:50]):
        producer.produce(topic, val, key, partition=0, timestamp=now + 100 + i)
    assert producer.flush(30) == 0
    again = conn.tail(start=positions)
    with again:
        deadline = time.monotonic() + 20
        while again.stats.records < 10 and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(0.5)
    assert again.stats.records == 10
    assert again.frame()["offset"].min() == 40


def test_window_too_large_for_a_3_gb_address_space_raises_and_the_process_lives(
        sandbox, values) -> None:
    topic = _topic(sandbox, "big", partitions=3)
    producer = Producer(_kafka_conf(sandbox.env(admin=True), **{
        "linger.ms": 50, "batch.num.messages": 10_000, "queue.buffering.max.messages": 500_000}))
    now = int(time.time() * 1000)
    for i in range(400_000):
        key, val = values[i % len(values)]
        while True:
            try:
                producer.produce(topic, val, key, partition=i % 3, timestamp=now - 400_000 + i)
                break
            except BufferError:
                producer.poll(0.05)
    assert producer.flush(120) == 0
    code = textwrap.dedent(f"""
        import resource, sys
        resource.setrlimit(resource.RLIMIT_AS, (3 * 2**30, 3 * 2**30))
        import tu_analytics
        from tu_analytics.errors import WindowTooLargeError
        try:
            tu_analytics.connect(topic={topic!r}).window(last="1h", progress=False)
        except WindowTooLargeError as exc:
            rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
            print("RAISED", exc.estimate_bytes, exc.limit_bytes, rss)
            sys.exit(0)
        print("NOT RAISED")
        sys.exit(1)
    """)
    env = {**os.environ, **sandbox.env(admin=True)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=300, check=False)
    assert out.returncode == 0, out.stdout + out.stderr
    _, estimate, limit, peak_mb = out.stdout.split()
    assert int(estimate) > int(limit)
    assert int(peak_mb) < 1024  # raised after one batch, not after reading the window
    assert WindowTooLargeError.__name__ in tu_analytics.errors.__all__


def _self_signed(tmp_path) -> tuple[str, str]:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now).not_valid_after(now.replace(year=now.year + 1))
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return str(cert_path), str(key_path)


def test_plaintext_client_at_a_tls_listener_names_the_mixup(tmp_path) -> None:
    import ssl

    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(*_self_signed(tmp_path))
    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    srv.listen(16)
    srv.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:  # a TLS listener: the plaintext request fails its handshake
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except TimeoutError:
                continue
            conn.settimeout(1)
            try:
                ctx.wrap_socket(conn, server_side=True).recv(10)
            except (OSError, ssl.SSLError):
                pass
            finally:
                conn.close()

    server = threading.Thread(target=serve, daemon=True)
    server.start()
    try:
        began = time.monotonic()
        with pytest.raises(ConfigurationError, match="speaks TLS") as info:
            tu_analytics.connect(
                bootstrap_servers=f"127.0.0.1:{srv.getsockname()[1]}", topic="t",
                schema_registry_url="http://127.0.0.1:9/apis/ccompat/v7",
                security_protocol="SASL_PLAINTEXT", sasl_username="u",
                sasl_password="secret-pw").window(last="1m", progress=False)
        assert time.monotonic() - began < 10
        assert "SASL_SSL" in str(info.value)
    finally:
        stop.set()
        server.join()
        srv.close()
