"""The forwarder: the sandbox's counterpart of Trackunit's per-customer Flink job, exactly once.

It reads the platform topics (every machine) and copies each record only to the topic of
the customer that owns the machine, keeping key (the machine id), value, headers and
timestamp. Customer partitions are chosen with murmur2, as a Java (Flink) producer does.

Exactly once, as a Flink job with an exactly-once Kafka sink: each batch is one Kafka
transaction holding the copies *and* the consumer offsets (``send_offsets_to_transaction``),
so a batch lands on the customer topics completely or not at all, and is never read again
once it has landed. Customer topics therefore carry transaction markers (offset gaps) and,
after a crash, aborted records that read_committed consumers never see.

Nothing makes it exit but a stop request: on any error (a stalled or restarting broker, a
commit that times out, a fenced producer) it drops its clients, waits with a growing
backoff, and starts again from the committed offsets; a new producer with the same
``transactional.id`` aborts whatever the old one left open. Its health goes to
``forwarder.json`` (read by ``sandbox status``).
Run as ``python -m tu_analytics.sandbox.forwarder SANDBOX_DIR``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaException, Message, Producer, TopicPartition

from ._procs import StopFlag
from ._state import FORWARDER_GROUP, PLATFORM_TOPICS, State, customer_topics, load_state
from ._state import write_private as _write_private
from .fleet import build_fleet
from .provision import operator_kafka_config

log = logging.getLogger("tu_analytics.sandbox.forwarder")

TRANSACTIONAL_ID = "sandbox.forwarder"
BATCH = 5000
COMMIT_TIMEOUT_S = 60.0
MAX_BACKOFF_S = 30.0
# Records waiting but none read for this long: start the session again (new clients).
STALL_S = 30.0


def health_path(root: Path) -> Path:
    return root / "forwarder.json"


@dataclass
class Health:
    root: Path
    state: str = "starting"
    error: str | None = None
    forwarded: int = 0
    last_commit_ms: int = 0
    _written: float = field(default=0.0, repr=False)

    def report(self, state: str, error: str | None = None, force: bool = False) -> None:
        changed = (state, error) != (self.state, self.error)
        self.state, self.error = state, error
        now = time.monotonic()
        if changed or force or now - self._written > 2:
            self._written = now
            data = {
                "state": self.state,
                "error": self.error,
                "forwarded": self.forwarded,
                "last_commit_ms": self.last_commit_ms,
                "heartbeat_ms": int(time.time() * 1000),
            }
            _write_private(health_path(self.root), json.dumps(data))


class Router:
    """Which customer topic a platform record goes to (None: no owning customer)."""

    def __init__(self, state: State) -> None:
        fleet = build_fleet(state.seed)
        self.owner = {m.machine_id.encode(): m.customer for m in fleet.machines}
        self.fmt_of = {topic: fmt for fmt, topic in PLATFORM_TOPICS.items()}
        self.routes = {c: customer_topics(c) for c in state.customers}

    def topic(self, m: Message) -> str | None:
        customer = self.owner.get(m.key() or b"")
        if customer is None or customer not in self.routes:
            return None
        return self.routes[customer][self.fmt_of[m.topic() or ""]]


def _clients(state: State) -> tuple[Consumer, Producer]:
    base = {**operator_kafka_config(state), "log_level": 3}
    consumer = Consumer(
        {
            **base,
            "group.id": FORWARDER_GROUP,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "isolation.level": "read_committed",
        }
    )
    producer = Producer(
        {
            **base,
            "transactional.id": TRANSACTIONAL_ID,
            "transaction.timeout.ms": 60000,
            # Java's default partitioner (murmur2 of the key), as a Flink job writes.
            "partitioner": "murmur2_random",
            "linger.ms": 20,
            "batch.num.messages": 10000,
        }
    )
    return consumer, producer


def _produce(producer: Producer, topic: str, m: Message) -> None:
    kwargs: dict[str, Any] = {"timestamp": m.timestamp()[1]}
    headers = m.headers()
    if headers:
        kwargs["headers"] = headers
    while True:
        try:
            producer.produce(topic, m.value(), m.key(), **kwargs)
            return
        except BufferError:
            producer.poll(0.1)


def _forward_batch(
    consumer: Consumer, producer: Producer, router: Router, msgs: list[Message]
) -> int:
    """One transaction: the copies of ``msgs`` and the offsets after them."""
    producer.begin_transaction()
    n = 0
    for m in msgs:
        err = m.error()
        if err is not None:
            if err.fatal():
                raise KafkaException(err)
            log.warning("consume error: %s", err)
            continue
        topic = router.topic(m)
        if topic is not None:
            _produce(producer, topic, m)
            n += 1
    positions = consumer.position(consumer.assignment())
    producer.send_offsets_to_transaction(
        positions, consumer.consumer_group_metadata(), COMMIT_TIMEOUT_S
    )
    producer.commit_transaction(COMMIT_TIMEOUT_S)
    return n


class Watchdog:
    """Notices a consumer that has records waiting but reads none (it then raises), so a
    session whose clients got stuck is replaced instead of idling forever."""

    def __init__(self, consumer: Consumer) -> None:
        self.consumer = consumer
        self.tps = [TopicPartition(t, 0) for t in PLATFORM_TOPICS.values()]
        self.since = time.monotonic()
        self.last: list[int] = []

    def check(self) -> None:
        now = time.monotonic()
        if now - self.since < STALL_S:
            return
        positions = [max(tp.offset, 0) for tp in self.consumer.position(self.tps)]
        ends = [self.consumer.get_watermark_offsets(tp, timeout=10)[1] for tp in self.tps]
        waiting = any(pos < end for pos, end in zip(positions, ends, strict=True))
        if waiting and positions == self.last:
            raise KafkaException(f"no progress for {STALL_S:.0f} s at {positions} of {ends}")
        self.last, self.since = positions, now


def _session(state: State, router: Router, stop: StopFlag, health: Health) -> None:
    """Forward until stopped; any error ends the session (and its clients) by raising."""
    consumer, producer = _clients(state)
    try:
        producer.init_transactions(COMMIT_TIMEOUT_S)  # fences and aborts an earlier instance
        consumer.assign([TopicPartition(t, 0) for t in PLATFORM_TOPICS.values()])
        health.report("ok", None, force=True)
        watchdog = Watchdog(consumer)
        while not stop.set:
            msgs = consumer.consume(num_messages=BATCH, timeout=0.5)
            if msgs:
                health.forwarded += _forward_batch(consumer, producer, router, msgs)
                health.last_commit_ms = int(time.time() * 1000)
            health.report("ok")
            watchdog.check()
    except BaseException:
        with contextlib.suppress(KafkaException):
            producer.abort_transaction(5)
        raise
    finally:
        with contextlib.suppress(KafkaException, RuntimeError):
            consumer.close()
        producer.purge()


def run(root: Path) -> None:
    state = load_state(root)
    if state is None:
        raise SystemExit(f"no sandbox state in {root}")
    router = Router(state)
    health = Health(root)
    stop = StopFlag()
    backoff = 1.0
    while not stop.set:
        started = time.monotonic()
        try:
            _session(state, router, stop, health)
        except KafkaException as exc:
            # A stalled broker, a timed-out commit, a fenced producer: never fatal here.
            log.warning("forwarding paused (%s); retrying in %.0f s", exc, backoff)
            health.report("retrying", str(exc))
            if time.monotonic() - started > 60:
                backoff = 1.0
            stop.sleep(backoff)
            backoff = min(MAX_BACKOFF_S, backoff * 2)
    health.report("stopped", None, force=True)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    run(Path(sys.argv[1]))


if __name__ == "__main__":
    main()
