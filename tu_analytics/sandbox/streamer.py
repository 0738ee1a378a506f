"""The streamer: runs the fleet simulator and writes every machine to the platform topics.

On its first start it backfills from the sandbox's epoch (``backfill_days`` before the first
``up``) to now, as fast as the broker takes it, then streams live in real time, once a
second. The simulator is deterministic, so a restart replays the simulation from the epoch
without producing and carries on exactly where the last run stopped. Progress goes to
``streamer.json`` (read by ``up``). Run as ``python -m tu_analytics.sandbox.streamer DIR
[--clock ISO]``.

The sandbox clock: ``--clock`` (else the ``TU_SANDBOX_CLOCK`` environment variable), an ISO-8601
instant with a zone such as ``2026-03-04T10:00:00Z``, makes the fleet behave as if *now* were
that instant (see :class:`~tu_analytics.sandbox.simulator.SimConfig`); Kafka timestamps stay
real. The resulting offset is fixed at the first start and kept in ``streamer.json``
(``clock_offset_ms``), so a restart replays the same stream; use a fresh sandbox to change it.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

from confluent_kafka import Producer

from ._procs import StopFlag
from ._state import PLATFORM_TOPICS, State, load_state
from .fleet import build_fleet
from .provision import operator_kafka_config
from .simulator import SimConfig, Simulator, clock_offset

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


CLOCK_ENV = "TU_SANDBOX_CLOCK"


def parse_clock(text: str) -> datetime:
    """An ISO-8601 instant with a zone (``Z`` or ``+hh:mm``) for the sandbox clock."""
    try:
        t = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{CLOCK_ENV}: not an ISO-8601 instant: {text!r}") from None
    if t.tzinfo is None:
        raise ValueError(f"{CLOCK_ENV}: {text!r} has no time zone; add Z or +hh:mm")
    return t


def sim_config_for(root: Path, clock: str | None = None, now: datetime | None = None
                   ) -> SimConfig:
    """The streamer's config: the clock offset kept in ``streamer.json``, or else one from
    ``clock`` (an ISO instant) taken as *now*. No clock and no progress: offset zero."""
    prog = read_progress(root)
    if "clock_offset_ms" in prog:
        return SimConfig(clock_offset=timedelta(milliseconds=int(prog["clock_offset_ms"])))
    if not clock:
        return SimConfig()
    return SimConfig(clock_offset=clock_offset(parse_clock(clock), now or datetime.now(UTC)))


def simulator_for(state: State, config: SimConfig | None = None) -> Simulator:
    return Simulator(build_fleet(state.seed), seed=state.seed, v2_from=_dt(state.v2_from_ms),
                     config=config or SimConfig())


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


def run(root: Path, clock: str | None = None) -> None:
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
    config = sim_config_for(root, clock)
    offset_ms = int(config.clock_offset.total_seconds() * 1000)
    sim = simulator_for(state, config)
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
        _write_progress(root, phase=phase, until_ms=done, produced=produced,
                        clock_offset_ms=offset_ms)
    producer.flush(30)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    ap = argparse.ArgumentParser(prog="python -m tu_analytics.sandbox.streamer")
    ap.add_argument("root", type=Path, help="the sandbox directory")
    ap.add_argument("--clock", default=os.environ.get(CLOCK_ENV),
                    help=f"ISO instant the fleet takes as now at first start (env {CLOCK_ENV})")
    args = ap.parse_args(sys.argv[1:])
    run(args.root, args.clock)


if __name__ == "__main__":
    main()
