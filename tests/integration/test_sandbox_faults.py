"""Faults against a sandbox of this module's own (small backfill), placed under a 0755 parent:
another local user cannot read it; the forwarder outlives a 60 s broker stall and a SIGKILL
mid-batch, and every platform record still reaches its customer's topic exactly once."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from kafka_helpers import _kafka_conf, as_nobody
from sandbox_checks import assert_exactly_once, counts, streamer_paused, wait_forwarded

from tu_analytics.sandbox import _procs, manager
from tu_analytics.sandbox._state import (
    CUSTOMER_PARTITIONS,
    DEFAULT_PORTS,
    PLATFORM_TOPICS,
    customer_topics,
    load_state,
)
from tu_analytics.sandbox.fleet import build_fleet
from tu_analytics.sandbox.provision import operator_kafka_config
from tu_analytics.sandbox.supervisor import read_progress


@pytest.fixture(scope="module")
def own_sandbox() -> Iterator[Path]:
    parent = Path(tempfile.mkdtemp(prefix="tu-faults-"))
    parent.chmod(0o755)  # readable by anyone: only the sandbox's own modes protect it
    root = parent / "sandbox"
    ports = {name: _procs.free_port() for name in DEFAULT_PORTS}
    manager.up(root=root, ports=ports, backfill_days=0.1, say=lambda m: print(m, flush=True))
    try:
        yield root
    finally:
        manager.down(root=root)
        left = counts(root)
        shutil.rmtree(parent, ignore_errors=True)
        assert left == {}, f"processes left after down: {left}"


def _pid(root: Path, role: str) -> int:
    procs = _procs.owned(root.resolve())[role]
    assert len(procs) == 1, f"{len(procs)} {role} processes"
    return procs[0].pid


def test_another_user_cannot_read_the_sandbox(own_sandbox: Path) -> None:
    segments = sorted((own_sandbox / "kafka" / "data").glob("trackunit.*/*.log"))
    assert segments, "the customer topics should have segment files"
    # The probe works: nobody can list the 0755 parent.
    assert as_nobody("ls", str(own_sandbox.parent)).returncode == 0
    for target in (segments[0], own_sandbox / "state.json", own_sandbox / "tls" / "broker.pem"):
        out = as_nobody("cat", str(target))
        assert out.returncode != 0
        assert "Permission denied" in out.stderr
        assert out.stdout == ""
    assert as_nobody("ls", str(own_sandbox)).returncode != 0


def test_forwarder_rides_out_a_60s_broker_stall(own_sandbox: Path) -> None:
    forwarder = _pid(own_sandbox, "forwarder")
    restarts = read_progress(own_sandbox)["restarts"]["forwarder"]
    broker = _pid(own_sandbox, "broker")
    os.kill(broker, signal.SIGSTOP)
    try:
        time.sleep(60)
    finally:
        os.kill(broker, signal.SIGCONT)
    wait_forwarded(own_sandbox)
    # The same forwarder process carried on: it never exits because a batch is slow.
    assert _pid(own_sandbox, "forwarder") == forwarder
    assert read_progress(own_sandbox)["restarts"]["forwarder"] == restarts
    assert assert_exactly_once(own_sandbox) > 0
    with streamer_paused(own_sandbox):  # no live records arriving while status is read
        wait_forwarded(own_sandbox)
        st = manager.status(root=own_sandbox)
    assert st["running"]
    assert st["forwarder"]["lag"] == 0
    assert st["forwarder"]["healthy"], st["forwarder"]


def _burst(root: Path, n: int) -> None:
    """``n`` records on the platform raw topic at once (as a burst of device traffic), so the
    forwarder has several full batches of work."""
    state = load_state(root)
    assert state is not None
    machines = [m.machine_id.encode() for m in build_fleet(state.seed).machines]
    producer = Producer(operator_kafka_config(state))
    now = int(time.time() * 1000)
    for i in range(n):
        value = b"\x00" + os.urandom(60)
        producer.produce(PLATFORM_TOPICS["raw"], value, machines[i % len(machines)], timestamp=now)
        if i % 1000 == 0:
            producer.poll(0)
    assert producer.flush(30) == 0


def _count(env: dict[str, str], topic: str, isolation: str) -> int:
    """Data records a reader with this isolation level gets (markers are never delivered)."""
    conf = {**_kafka_conf(env), "group.id": "operator.probe", "isolation.level": isolation}
    c = Consumer({**conf, "enable.auto.commit": False, "log_level": 0})
    try:
        tps = [TopicPartition(topic, p, 0) for p in range(CUSTOMER_PARTITIONS)]
        ends = {tp.partition: c.get_watermark_offsets(tp, timeout=10)[1] for tp in tps}
        c.assign(tps)
        n, todo = 0, set(ends)
        while todo:
            n += sum(1 for m in c.consume(10000, timeout=1) if m.error() is None)
            todo = {tp.partition for tp in c.position(tps) if tp.offset < ends[tp.partition]}
        return n
    finally:
        c.close()


def _aborted_copies(root: Path) -> int:
    """Records a read_uncommitted reader gets on the customer topics beyond what a
    read_committed one gets: the copies written by transactions that were killed."""
    env = manager.env_vars(root=root, admin=True)
    state = load_state(root)
    assert state is not None
    return sum(
        _count(env, topic, "read_uncommitted") - _count(env, topic, "read_committed")
        for topic in (customer_topics(c)["raw"] for c in state.customers)
    )


@contextlib.contextmanager
def _open_transaction_probe(root: Path) -> Iterator[Callable[[], bool]]:
    """A check that is true while a transaction has records on a customer topic but is not
    committed: the high watermark (read_uncommitted) is then past the last stable offset
    (what ListOffsets answers a read_committed client)."""
    env = manager.env_vars(root=root, admin=True)
    state = load_state(root)
    assert state is not None
    tps = [
        TopicPartition(customer_topics(c)["raw"], p)
        for c in state.customers
        for p in range(CUSTOMER_PARTITIONS)
    ]
    conf = {**_kafka_conf(env), "group.id": "operator.probe", "log_level": 0}
    dirty = Consumer({**conf, "isolation.level": "read_uncommitted"})
    clean = Consumer({**conf, "isolation.level": "read_committed"})

    def open_now() -> bool:
        return any(
            dirty.get_watermark_offsets(tp, timeout=5)[1]
            > clean.get_watermark_offsets(tp, timeout=5)[1]
            for tp in tps
        )

    try:
        yield open_now
    finally:
        dirty.close()
        clean.close()


def test_forwarder_killed_mid_batch_recovers_exactly_once(own_sandbox: Path) -> None:
    with _open_transaction_probe(own_sandbox) as open_now:
        for _ in range(3):
            pid = _pid(own_sandbox, "forwarder")
            restarts = read_progress(own_sandbox)["restarts"]["forwarder"]
            # Give it a backlog of several batches, then kill it inside a transaction.
            os.kill(pid, signal.SIGSTOP)
            _burst(own_sandbox, 20_000)
            os.kill(pid, signal.SIGCONT)
            deadline = time.monotonic() + 30
            while not open_now():
                assert time.monotonic() < deadline, "no transaction seen open"
            os.kill(pid, signal.SIGKILL)
            deadline = time.monotonic() + 60
            while read_progress(own_sandbox)["restarts"]["forwarder"] == restarts:
                assert time.monotonic() < deadline, "the supervisor did not restart the forwarder"
                time.sleep(0.5)
    assert assert_exactly_once(own_sandbox) > 60_000
    # Killed mid-transaction: its copies are on the topics, aborted, unseen by read_committed.
    assert _aborted_copies(own_sandbox) > 0
    assert counts(own_sandbox) == dict.fromkeys(
        ("supervisor", "broker", "registry", "forwarder", "streamer"), 1
    )
    st = manager.status(root=own_sandbox)
    assert st["forwarder"]["healthy"], st["forwarder"]
