"""The forwarder: the sandbox's counterpart of Trackunit's per-customer Flink job.

It reads the platform topics (every machine) and copies each record only to the topic of
the customer that owns the machine, keeping key (the machine id), value and timestamp.
Offsets are committed after the copies are acknowledged (at-least-once; a clean stop
leaves no duplicates). Run as ``python -m tu_analytics.sandbox.forwarder SANDBOX_DIR``.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, Producer

from ._procs import StopFlag
from ._state import FORWARDER_GROUP, PLATFORM_TOPICS, customer_topics, load_state
from .fleet import build_fleet
from .provision import operator_kafka_config

log = logging.getLogger("tu_analytics.sandbox.forwarder")


def run(root: Path) -> None:
    state = load_state(root)
    if state is None:
        raise SystemExit(f"no sandbox state in {root}")
    fleet = build_fleet(state.seed)
    owner = {m.machine_id.encode(): m.customer for m in fleet.machines}
    fmt_of = {topic: fmt for fmt, topic in PLATFORM_TOPICS.items()}
    routes = {c: customer_topics(c) for c in state.customers}

    base = operator_kafka_config(state)
    consumer = Consumer(
        {
            **base,
            "group.id": FORWARDER_GROUP,
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "enable.partition.eof": False,
        }
    )
    producer = Producer(
        {**base, "enable.idempotence": True, "linger.ms": 20, "batch.num.messages": 10000}
    )
    stop = StopFlag()
    consumer.subscribe(list(PLATFORM_TOPICS.values()))
    unrouted = 0
    try:
        while not stop.set:
            msgs = consumer.consume(num_messages=5000, timeout=0.5)
            if not msgs:
                continue
            for m in msgs:
                err = m.error()
                if err is not None:
                    if err.code() != KafkaError._PARTITION_EOF:
                        log.warning("consume error: %s", err)
                    continue
                customer = owner.get(m.key() or b"")
                if customer is None or customer not in routes:
                    unrouted += 1
                    continue
                topic = routes[customer][fmt_of[m.topic() or ""]]
                while True:
                    try:
                        producer.produce(topic, m.value(), m.key(), timestamp=m.timestamp()[1])
                        break
                    except BufferError:
                        producer.poll(0.1)
            if producer.flush(30) > 0:
                raise RuntimeError("forwarder could not deliver its batch within 30 s")
            consumer.commit(asynchronous=False)
            if unrouted:
                log.warning("%d records had no owning customer and were not forwarded", unrouted)
                unrouted = 0
    finally:
        producer.flush(30)
        consumer.close()


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    run(Path(sys.argv[1]))


if __name__ == "__main__":
    main()
