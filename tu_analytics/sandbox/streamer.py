"""The streamer: runs the fleet simulator and writes every machine to the platform topics.

On its first start it backfills from the sandbox's epoch (``backfill_days`` before the first
``up``) to now, as fast as the broker takes it, then streams live in real time, once a
second. The simulator is deterministic, so a restart replays the simulation from the epoch
without producing and carries on exactly where the last run stopped. Progress goes to
``streamer.json`` (read by ``up``). Run as ``python -m tu_analytics.sandbox.streamer DIR
[--clock ISO] [--late-share F] [--disorder-share F] [--duplicate-share F]``.

The stream's realism knobs are :class:`~tu_analytics.sandbox.simulator.SimConfig`'s: coverage
outages (``--late-share``, default 0.03), Kafka timestamps moved back (``--disorder-share``,
0.03) and device resends (``--duplicate-share``, 0.005). Like the clock, they are fixed at the
first start and kept in ``streamer.json``. Insights schema v2 starts at the state's
``v2_from_ms`` and v3 a third of the way from there to the backfill's end (:func:`v3_from`).

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
from collections.abc import Iterator, Mapping
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


_SHARES = ("late_share", "disorder_share", "duplicate_share")


def sim_config_for(root: Path, clock: str | None = None,
                   shares: Mapping[str, float] | None = None, *, now: datetime | None = None
                   ) -> SimConfig:
    """The streamer's config: the one kept in ``streamer.json`` once the streamer has run;
    before that, ``clock`` (an ISO instant taken as *now*; none: offset zero) and ``shares``
    (``late_share``, ``disorder_share``, ``duplicate_share``; defaults of ``SimConfig``)."""
    prog = read_progress(root)
    if "clock_offset_ms" in prog:
        kept = {k: float(prog[k]) for k in _SHARES if k in prog}
        return SimConfig(clock_offset=timedelta(milliseconds=int(prog["clock_offset_ms"])),
                         **kept)
    offset = timedelta(0)
    if clock:
        offset = clock_offset(parse_clock(clock), now or datetime.now(UTC))
    return SimConfig(clock_offset=offset, **(shares or {}))


def _kept(config: SimConfig) -> dict[str, int | str]:
    """The config as ``streamer.json`` keeps it (shares as text: the file holds str/int)."""
    return {"clock_offset_ms": int(config.clock_offset.total_seconds() * 1000),
            **{k: repr(getattr(config, k)) for k in _SHARES}}


def v3_from(state: State) -> datetime:
    """When insights schema v3 starts: a third of the way from v2's start to the backfill's
    end, so three versions are live on the topic over the backfill."""
    backfill_end = state.epoch_ms + int(state.backfill_days * 86_400_000)
    return _dt(state.v2_from_ms + max(0, backfill_end - state.v2_from_ms) // 3)


def simulator_for(state: State, config: SimConfig | None = None) -> Simulator:
    return Simulator(build_fleet(state.seed), seed=state.seed, v2_from=_dt(state.v2_from_ms),
                     v3_from=v3_from(state), config=config or SimConfig())


def schema_id_map(state: State) -> dict[tuple[str, int], int]:
    return {(k.split(".")[0], int(k.split(".")[1])): v for k, v in state.schema_ids.items()}


def batches(
    sim: Simulator, state: State, start_ms: int, end_ms: int
) -> Iterator[list[tuple[bytes, bytes, int, str, str]]]:
    yield from sim.encoded_batches(_dt(start_ms), _dt(end_ms), schema_id_map(state))


def produce_all(producer: Producer, batch: list[tuple[bytes, bytes, int, str, str]]) -> int:
    """Write a batch to the platform topics with the simulator's Kafka timestamps (which go
    backwards now and then, as a parallel ingestion writes them)."""
    n = 0
    for key, value, ts, _customer, fmt in batch:
        while True:
            try:
                producer.produce(PLATFORM_TOPICS[fmt], value, key, timestamp=ts)
                break
            except BufferError:
                producer.poll(0.05)
        n += 1
    producer.poll(0)
    return n


def run(root: Path, clock: str | None = None, shares: Mapping[str, float] | None = None
        ) -> None:
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
    config = sim_config_for(root, clock, shares)
    sim = simulator_for(state, config)
    done = int(read_progress(root).get("until_ms", state.epoch_ms))
    # Windows are pure functions of the simulation: a restart goes on from where it stopped.
    cursor = done
    produced = int(read_progress(root).get("produced", 0))
    phase = "backfill"
    while not stop.set:
        now = _ms(datetime.now(UTC))
        if now - cursor < 1000:
            time.sleep(0.2)
            continue
        for batch in batches(sim, state, cursor, now):
            produced += produce_all(producer, batch)
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
        _write_progress(root, phase=phase, until_ms=done, produced=produced, **_kept(config))
    producer.flush(30)


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    ap = argparse.ArgumentParser(prog="python -m tu_analytics.sandbox.streamer")
    ap.add_argument("root", type=Path, help="the sandbox directory")
    ap.add_argument("--clock", default=os.environ.get(CLOCK_ENV),
                    help=f"ISO instant the fleet takes as now at first start (env {CLOCK_ENV})")
    for name, default in (("late", 0.03), ("disorder", 0.03), ("duplicate", 0.005)):
        ap.add_argument(f"--{name}-share", type=float, default=default,
                        help=f"SimConfig.{name}_share at first start (default {default})")
    args = ap.parse_args(sys.argv[1:])
    run(args.root, args.clock, {k: getattr(args, k) for k in _SHARES})


if __name__ == "__main__":
    main()
