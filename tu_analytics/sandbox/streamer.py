"""The streamer: runs the fleet simulator and writes every machine to the platform topics.

On its first start it backfills from the sandbox's epoch (``backfill_days`` before the first
``up``) to now, as fast as the broker takes it, then streams live in real time, once a
second. The simulator is deterministic, so a restart replays the simulation from the epoch
without producing and carries on exactly where the last run stopped. Progress goes to
``streamer.json`` (read by ``up``). Run as ``python -m tu_analytics.sandbox.streamer DIR``.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

from confluent_kafka import Producer

from ._procs import StopFlag
from ._state import PLATFORM_TOPICS, State, load_state
from .fleet import build_fleet
from .provision import operator_kafka_config
from .simulator import Simulator

log = logging.getLogger("tu_analytics.sandbox.streamer")


def progress_path(root: Path) -> Path:
    return root / "streamer.json"


def read_progress(root: Path) -> dict[str, int | str]:
    try:
        data: dict[str, int | str] = json.loads(progress_path(root).read_text())
        return data
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def _write_progress(root: Path, **data: int | str) -> None:
    tmp = progress_path(root).with_suffix(".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, progress_path(root))


def mark_starting(root: Path) -> None:
    prog = read_progress(root)
    if prog:
        _write_progress(root, **{**prog, "phase": "starting"})


def _ms(dt: datetime) -> int:
    return int(dt.timestamp() * 1000)


def _dt(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, tz=UTC)


def simulator_for(state: State) -> Simulator:
    return Simulator(build_fleet(state.seed), seed=state.seed, v2_from=_dt(state.v2_from_ms))


def schema_id_map(state: State) -> dict[tuple[str, int], int]:
    return {(k.split(".")[0], int(k.split(".")[1])): v for k, v in state.schema_ids.items()}


def batches(
    sim: Simulator, state: State, start_ms: int, end_ms: int
) -> Iterator[list[tuple[bytes, bytes, int, str, str]]]:
    yield from sim.encoded_batches(_dt(start_ms), _dt(end_ms), schema_id_map(state))


def produce_all(
    producer: Producer, batch: list[tuple[bytes, bytes, int, str, str]], skip_before_ms: int = 0
) -> int:
    n = 0
    for key, value, ts, _customer, fmt in batch:
        if ts < skip_before_ms:
            continue
        while True:
            try:
                producer.produce(PLATFORM_TOPICS[fmt], value, key, timestamp=ts)
                break
            except BufferError:
                producer.poll(0.05)
        n += 1
    producer.poll(0)
    return n


def run(root: Path) -> None:
    state = load_state(root)
    if state is None:
        raise SystemExit(f"no sandbox state in {root}")
    stop = StopFlag()

    producer = Producer(
        {
            **operator_kafka_config(state),
            "enable.idempotence": True,
            "linger.ms": 50,
            "batch.num.messages": 10000,
            "queue.buffering.max.messages": 500000,
        }
    )
    sim = simulator_for(state)
    done = int(read_progress(root).get("until_ms", state.epoch_ms))
    cursor = state.epoch_ms
    produced = int(read_progress(root).get("produced", 0))
    phase = "backfill"
    while not stop.set:
        now = _ms(datetime.now(UTC))
        if now - cursor < 1000:
            time.sleep(0.2)
            continue
        for batch in batches(sim, state, cursor, now):
            produced += produce_all(producer, batch, skip_before_ms=done)
            if stop.set:
                break
        if producer.flush(60) > 0:
            raise RuntimeError("streamer could not deliver within 60 s")
        if stop.set:
            break
        cursor = now
        done = max(done, now)
        if phase == "backfill" and _ms(datetime.now(UTC)) - cursor < 5000:
            phase = "live"
        _write_progress(root, phase=phase, until_ms=done, produced=produced)
    producer.flush(30)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    run(Path(sys.argv[1]))


if __name__ == "__main__":
    main()
