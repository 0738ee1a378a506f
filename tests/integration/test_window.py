"""Bounded windows against the real sandbox (issue: windows into Polars)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext
from kafka_helpers import _kafka_conf, read_all, sr_auth
from polars.testing import assert_frame_equal
from sim_schedule import busy_window

import tu_analytics
from tu_analytics import _kafka, _pipeline
from tu_analytics.errors import DecodeWarning, RetentionWarning


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


@pytest.fixture(scope="module")
def settled(sandbox):
    """A cut in the past, and every record before it as a plain consumer sees them."""
    env = sandbox.env()
    cut = int(time.time() * 1000) - 5000
    time.sleep(6)  # let the forwarder pass the cut
    return cut, read_all(env, env["TU_TOPIC"], before_ms=cut)


def test_fifty_random_windows_are_exact(sandbox, settled) -> None:
    cut, records = settled
    assert len({p for p, *_ in records}) >= 3
    conn = sandbox.connect()
    rng = random.Random(20261127)
    lo = min(ts for _, _, ts, _, _ in records)
    for i in range(50):
        a = rng.randrange(lo - 3_600_000, cut)
        b = rng.randrange(
            a + 1, min(cut, a + rng.choice([60_000, 3_600_000, 6 * 3_600_000, 2 * 86_400_000])) + 1
        )
        win = conn.window(_dt(a), _dt(b), progress=False)
        got = list(zip(win.main["partition"], win.main["offset"], strict=True)) + list(
            zip(win.errors["partition"], win.errors["offset"], strict=True)
        )
        expected = {(p, o) for p, o, ts, _, _ in records if a <= ts < b}
        assert len(got) == len(set(got)), f"window {i} has duplicates"
        assert set(got) == expected, f"window {i} [{a}, {b}) differs"


def test_machine_filter(sandbox) -> None:
    conn = sandbox.connect()
    full = conn.window(last="6h", progress=False)
    some = full.main["MachineId"].drop_nulls().unique().sort().head(3).to_list()
    win = conn.window(start=full.spec.start, end=full.spec.end, machines=some, progress=False)
    assert set(win.main["MachineId"].unique()) == set(some)
    assert win.main.height == full.main.filter(pl.col("MachineId").is_in(some)).height
    for name, frame in win.long.items():
        assert set(frame["MachineId"].unique()) <= set(some), name


def test_raw_format_window(sandbox) -> None:
    win = sandbox.connect(fmt="raw").window(last="12h", progress=False)
    assert win.spec.format == "raw"
    assert win.main.height > 0
    for col in (
        "partition",
        "offset",
        "kafka_timestamp",
        "schema_id",
        "unitId",
        "machineId",
        "time",
        "latitude",
        "longitude",
        "run1",
        "km",
        "input1",
    ):
        assert col in win.main.columns
    assert win.main["time"].dtype == pl.Datetime("ms", "UTC")


def test_window_across_the_schema_change_holds_both_ids(sandbox) -> None:
    v2 = sandbox.state.v2_from_ms
    win = sandbox.connect().window(_dt(v2 - 3_600_000), _dt(v2 + 3_600_000), progress=False)
    ids = set(win.main["schema_id"].unique())
    assert len(ids) == 2
    assert "AmberWarningLamp" in win.main.columns
    old = win.main.filter(pl.col("schema_id") == min(ids))
    assert old["AmberWarningLamp"].null_count() == old.height
    assert win.main["AmberWarningLamp"].dtype == pl.Boolean


def _register_subject(sandbox, topic: str) -> None:
    """The topic's value subject, as a producer registers it (windows check it exists)."""
    from confluent_kafka.schema_registry import Schema

    from tu_analytics.sandbox.provision import operator_registry_config, schema_text

    with SchemaRegistryClient(operator_registry_config(sandbox.state)) as sr:
        sr.register_schema(f"{topic}-value",
                           Schema(schema_text("machine_insights_v1.avsc"), "AVRO"))


def test_bad_records_land_in_errors_with_offsets(sandbox) -> None:
    admin_env = sandbox.env(admin=True)
    topic = f"bad-input-{time.monotonic_ns()}"
    admin = AdminClient(_kafka_conf(admin_env))
    admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])[topic].result()
    _register_subject(sandbox, topic)
    good = read_all(admin_env, admin_env["TU_TOPIC"])[:3000]
    v1 = sandbox.state.schema_ids["insights.1"]
    body = good[0][4][5:]
    bad = {
        "bad magic byte": b"\x07" + good[0][4][1:],
        "unknown schema id": b"\x00" + (999_999).to_bytes(4, "big") + body,
        "truncated": b"\x00" + v1.to_bytes(4, "big") + body[: len(body) // 2],
        "garbage": b"\x00" + v1.to_bytes(4, "big") + bytes(range(200, 256)) * 3,
        "short": b"\x00\x01",
    }
    producer = Producer(_kafka_conf(admin_env))
    now = int(time.time() * 1000)
    kinds = list(bad)
    for i, (_, _, _, key, value) in enumerate(good):
        producer.produce(topic, value, key, partition=i % 3, timestamp=now)
        if i % 500 == 250:
            kind = kinds[(i // 500) % len(kinds)]
            producer.produce(
                topic, bad[kind], key, partition=i % 3, timestamp=now, headers={"kind": kind}
            )
    producer.produce(topic, None, b"tombstone", partition=0, timestamp=now)
    assert producer.flush(30) == 0
    conn = sandbox.connect(admin=True, topic=topic)
    with pytest.warns(DecodeWarning, match="could not be decoded"):
        win = conn.window(_dt(now - 1000), _dt(now + 1000), progress=False)
    assert win.main.height == len(good)
    assert win.errors.height == 7  # 6 injected + the null value
    assert set(win.errors.columns) >= {
        "partition",
        "offset",
        "kafka_timestamp",
        "schema_id",
        "reason",
        "key",
        "value",
    }
    reasons = " | ".join(win.errors["reason"].to_list())
    assert "magic" in reasons
    assert "999999" in reasons
    # every injected value is kept byte for byte
    assert set(bad.values()) <= set(v for v in win.errors["value"].to_list() if v is not None)
    both = pl.concat(
        [win.main.select("partition", "offset"), win.errors.select("partition", "offset")]
    )
    assert both.n_unique() == len(good) + 7


def test_values_equal_confluents_deserializer(sandbox, request) -> None:
    env = sandbox.env()
    # The twelve hours in which the schedule has the customer's machines working most,
    # whatever the hour now: a whole shift, so the sample holds well over 1000 values (three
    # hours of one customer's fleet held fewer).
    start, end = busy_window(sandbox, hours=12)
    win = sandbox.connect().window(start, end, progress=False)
    sr = SchemaRegistryClient(
        {
            "url": env["TU_SCHEMA_REGISTRY_URL"],
            "timeout": 20,
            "basic.auth.user.info": sr_auth(env),
        }
    )
    request.addfinalizer(sr.close)
    deser = AvroDeserializer(sr)
    ctx = SerializationContext(env["TU_TOPIC"], MessageField.VALUE)
    raw = {(p, o): v for p, o, _, _, v in read_all(env, env["TU_TOPIC"])}
    rows = win.main.sample(min(1500, win.main.height), seed=1).to_dicts()
    compared = 0
    for row in rows:
        obj = deser(raw[(row["partition"], row["offset"])], ctx)
        assert row["MachineId"] == obj["Metadata"]["MachineId"]
        for name, val in obj.items():
            # An insight record, by the published rule: its value is the one field that is
            # neither the unit (a name containing "unit") nor ``datetime``, whatever its name.
            values = [k for k in val if k != "datetime" and "unit" not in k.lower()] \
                if isinstance(val, dict) and "datetime" in val and name in row else []
            if len(values) == 1 and not isinstance(val[values[0]], dict | list):
                v = val[values[0]]
                assert row[name] == v, (name, row[name], v)
                when = val["datetime"]
                if when is not None:  # plain long epoch ms (v1, v2) or timestamp-millis (v3)
                    ms = when if isinstance(when, int) else round(when.timestamp() * 1000)
                    got = row[f"{name}_datetime"]
                    assert round(got.timestamp() * 1000) == ms, (name, got, when)
                compared += 1
        loc = obj.get("Location")
        if loc:
            assert row["Latitude"] == loc["Latitude"]
            assert row["Longitude"] == loc["Longitude"]
    assert compared > 1000


def test_unreachable_registry_unknown_topic_are_clear_and_fast(sandbox) -> None:
    from tu_analytics.sandbox._procs import free_port

    pw = sandbox.env()["TU_SCHEMA_REGISTRY_PASSWORD"]
    conn = sandbox.connect(schema_registry_url=f"http://127.0.0.1:{free_port()}/apis/ccompat/v7")
    t = time.monotonic()
    with pytest.raises(tu_analytics.RegistryError) as info:
        conn.window(last="10m", progress=False)
    assert time.monotonic() - t < 10
    assert pw not in str(info.value)
    assert "could not be reached" in str(info.value)
    t = time.monotonic()
    with pytest.raises(tu_analytics.ConnectionError) as info2:
        sandbox.connect(topic="no.such.topic").window(last="10m", progress=False)
    assert time.monotonic() - t < 10
    assert "no.such.topic" in str(info2.value)


def test_snapshot_round_trip(sandbox, tmp_path: Path) -> None:
    win = sandbox.connect().window(last="2h", progress=False)
    path = win.save(tmp_path / "snap")
    back = tu_analytics.load_snapshot(path)
    assert back.spec == win.spec
    for name, frame in win.frames.items():
        assert_frame_equal(back.frames[name], frame)
    assert back.fault_codes.height == win.fault_codes.height


def test_no_secret_in_repr_or_errors(sandbox) -> None:
    env = sandbox.env()
    conn = sandbox.connect()
    for text in (repr(conn), str(conn), repr(conn.settings), str(conn.settings)):
        assert env["TU_SASL_PASSWORD"] not in text
        assert env["TU_SCHEMA_REGISTRY_PASSWORD"] not in text
    assert "********" in repr(conn.settings)


def test_retention_warning_and_size_guard(sandbox) -> None:
    conn = sandbox.connect()
    with pytest.warns(RetentionWarning, match="retention"):
        win = conn.window(
            start=datetime.now(UTC) - timedelta(days=20),
            end=datetime.now(UTC) - timedelta(days=2),
            progress=False,
        )
    assert win.main.height > 0
    with pytest.raises(tu_analytics.WindowTooLargeError, match="max_records"):
        conn.window(last="3d", max_records=10, progress=False)


def _broker_pid(sandbox) -> int:
    from tu_analytics.sandbox._state import load_state

    return load_state(sandbox.root).pids["broker"]


def test_broker_paused_mid_window_completes_or_fails_clearly(sandbox, settled, monkeypatch) -> None:
    cut, records = settled
    a = cut - 2 * 86_400_000
    expected = {(p, o) for p, o, ts, _, _ in records if a <= ts < cut}
    pid = _broker_pid(sandbox)
    real_read = _pipeline.read

    def fetch_with_pause(pause: float):
        def wrapped(*args, **kw):
            fired = []

            def on_progress(n: int, stats: object) -> None:
                if not fired:
                    fired.append(1)
                    os.kill(pid, signal.SIGSTOP)
                    threading.Timer(pause, os.kill, (pid, signal.SIGCONT)).start()

            kw["on_progress"] = on_progress
            return real_read(*args, **kw)

        return wrapped

    # Small fetches and a small local queue, so most of the window is still on the broker
    # when it is paused.
    conn = sandbox.connect(
        extra_kafka={
            "fetch.max.bytes": "1000000",
            "max.partition.fetch.bytes": "65536",
            "queued.max.messages.kbytes": "64",
        }
    )
    # a short pause: the window completes, and exactly
    monkeypatch.setattr(_pipeline, "read", fetch_with_pause(3))
    win = conn.window(_dt(a), _dt(cut), progress=False, stall_timeout=30)
    got = set(zip(win.main["partition"], win.main["offset"], strict=True)) | set(
        zip(win.errors["partition"], win.errors["offset"], strict=True)
    )
    assert got == expected
    # a long one: a clear error, no partial frame
    monkeypatch.setattr(_pipeline, "read", fetch_with_pause(8))
    with pytest.raises(tu_analytics.WindowError, match="no partial"):
        conn.window(_dt(a), _dt(cut), progress=False, stall_timeout=3)
    time.sleep(6)


def test_interrupt_closes_the_consumer(sandbox, monkeypatch) -> None:
    closed = []

    class Tracking(_kafka.KafkaConsumer):
        def close(self) -> None:
            closed.append(1)
            super().close()

    monkeypatch.setattr(_kafka, "KafkaConsumer", Tracking)
    real_read = _pipeline.read

    def interrupting(*args, **kw):
        def boom(n: int, stats: object) -> None:
            raise KeyboardInterrupt

        kw["on_progress"] = boom
        return real_read(*args, **kw)

    monkeypatch.setattr(_pipeline, "read", interrupting)
    with pytest.raises(KeyboardInterrupt):
        sandbox.connect().window(last="1d", progress=False)
    assert closed == [1]


def test_cli_window_writes_parquet_and_snapshot(sandbox, tmp_path: Path) -> None:
    env = {**os.environ, **sandbox.env()}

    def window_cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [
                sys.executable,
                "-m",
                "tu_analytics.cli",
                "window",
                "--last",
                "1h",
                "--no-progress",
                *args,
            ],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )

    out = window_cli("-o", str(tmp_path / "main.parquet"))
    assert out.returncode == 0, out.stderr
    assert "records:" in out.stdout
    assert "machines:" in out.stdout
    assert "errors:" in out.stdout
    assert pl.read_parquet(tmp_path / "main.parquet").height > 0
    out = window_cli("--format", "raw", "-o", str(tmp_path / "snap"))
    assert out.returncode == 0, out.stderr
    assert tu_analytics.load_snapshot(tmp_path / "snap").spec.format == "raw"
    assert env["TU_SASL_PASSWORD"] not in out.stdout + out.stderr


def test_connect_with_no_arguments_reads_the_environment(sandbox, monkeypatch) -> None:
    for k, v in sandbox.env().items():
        monkeypatch.setenv(k, v)
    with warnings.catch_warnings():
        conn = tu_analytics.connect()
    assert conn.settings.topic == sandbox.env()["TU_TOPIC"]
    win = conn.window(last="1h", progress=False)
    assert win.spec.topic == sandbox.env()["TU_TOPIC"]
    assert win.main.height > 0
