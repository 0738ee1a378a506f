"""Checks shared by the sandbox fault and lifecycle tests: exactly-once forwarding (every
platform record on its customer's topic once, same key, timestamp and value), Java's murmur2
partitioning, and counting a sandbox's processes."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import time
from collections import Counter
from pathlib import Path

from kafka_helpers import read_all

from tu_analytics.sandbox import _procs, manager
from tu_analytics.sandbox._state import (
    CUSTOMER_PARTITIONS,
    PLATFORM_TOPICS,
    customer_topics,
    load_state,
)
from tu_analytics.sandbox.fleet import build_fleet
from tu_analytics.sandbox.supervisor import forwarder_lag

Record = tuple[bytes, int, str]


def murmur2(data: bytes) -> int:
    """Kafka's Java ``Utils.murmur2`` (the default partitioner's hash), as unsigned 32 bits."""
    m, r, mask = 0x5BD1E995, 24, 0xFFFFFFFF
    length = len(data)
    h = (0x9747B28C ^ length) & mask
    for i in range(length // 4):
        k = int.from_bytes(data[4 * i : 4 * i + 4], "little")
        k = (k * m) & mask
        k ^= k >> r
        k = (k * m) & mask
        h = ((h * m) & mask) ^ k
    tail = data[length & ~3 :]
    if len(tail) == 3:
        h ^= tail[2] << 16
    if len(tail) >= 2:
        h ^= tail[1] << 8
    if tail:
        h ^= tail[0]
        h = (h * m) & mask
    h ^= h >> 13
    h = (h * m) & mask
    h ^= h >> 15
    return h


def java_partition(key: bytes, partitions: int) -> int:
    return (murmur2(key) & 0x7FFFFFFF) % partitions


def counts(root: Path) -> dict[str, int]:
    """How many live processes of each role name this sandbox directory (exact path)."""
    return {name: len(procs) for name, procs in _procs.owned(root.resolve()).items()}


@contextlib.contextmanager
def streamer_paused(root: Path):
    """Freeze the streamer, so the platform topics stop growing while they are compared."""
    pid = _procs.owned(root.resolve())["streamer"][0].pid
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


def wait_forwarded(root: Path, timeout: float = 240) -> None:
    state = load_state(root)
    assert state is not None
    deadline = time.monotonic() + timeout
    while (lag := forwarder_lag(state)) != 0:
        assert time.monotonic() < deadline, f"forwarder still {lag} records behind"
        time.sleep(1)


def _key(key: bytes, ts: int, value: bytes) -> Record:
    return key, ts, hashlib.sha256(value).hexdigest()


def assert_exactly_once(root: Path) -> int:
    """Every platform record is on its customer's topic exactly once, and nothing else is;
    partitions are Java's murmur2 choice. Returns the number of records compared."""
    state = load_state(root)
    assert state is not None
    admin = manager.env_vars(root=root, admin=True)
    owner = {m.machine_id.encode(): m.customer for m in build_fleet(state.seed).machines}
    compared = 0
    with streamer_paused(root):
        wait_forwarded(root)
        for fmt, platform_topic in PLATFORM_TOPICS.items():
            platform = read_all(admin, platform_topic)
            for customer in state.customers:
                topic = customer_topics(customer)[fmt]
                got = read_all(admin, topic)
                expected = Counter(
                    _key(k, ts, v) for _, _, ts, k, v in platform if owner.get(k) == customer
                )
                have = Counter(_key(k, ts, v) for _, _, ts, k, v in got)
                missing, extra = expected - have, have - expected
                assert not missing, f"{topic}: {sum(missing.values())} records missing"
                assert not extra, f"{topic}: {sum(extra.values())} records extra (duplicates)"
                n = CUSTOMER_PARTITIONS
                wrong = [(p, k) for p, _, _, k, _ in got if p != java_partition(k, n)]
                assert not wrong, f"{topic}: {len(wrong)} records not on murmur2's partition"
                compared += len(got)
    return compared
