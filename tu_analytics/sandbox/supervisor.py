"""The supervisor: one long-lived process per sandbox directory that owns the sandbox's life.

``up`` takes an exclusive ``fcntl.flock`` on the sandbox directory and hands the locked
descriptor to this process, which keeps it until it exits: while a supervisor lives, no
other ``up`` can start anything in that directory (it waits for this one's result instead).
The supervisor starts the broker, provisions it, starts the registry, the forwarder and the
streamer, and reports each step in ``supervisor.json`` (which ``up`` follows). Then it
watches: a dead forwarder or streamer is started again, with a growing pause between
restarts. SIGTERM (``down``) stops the children in order and ends it.
Run as ``python -m tu_analytics.sandbox.supervisor SANDBOX_DIR --lock-fd N``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from ..errors import SandboxError
from . import _procs
from ._state import (
    FORWARDER_GROUP,
    PLATFORM_TOPICS,
    State,
    cache_dir,
    load_state,
    read_json,
    save_state,
    write_private,
)

log = logging.getLogger("tu_analytics.sandbox.supervisor")
RESTARTED = ("forwarder", "streamer")
STOP_ORDER = ("streamer", "forwarder", "registry", "broker")


def progress_path(root: Path) -> Path:
    return root / "supervisor.json"


def read_progress(root: Path) -> dict[str, Any]:
    return read_json(progress_path(root))


def write_progress(root: Path, progress: dict[str, Any]) -> None:
    write_private(progress_path(root), json.dumps(progress))


class Stopped(SandboxError):
    """``down`` asked the supervisor to stop while the sandbox was starting."""


class Supervisor:
    def __init__(self, root: Path, cache: Path, timeout: float) -> None:
        self.root, self.cache, self.timeout = root, cache, timeout
        self.stop = _procs.StopFlag()
        self.progress: dict[str, Any] = {
            "phase": "starting",
            "pid": os.getpid(),
            "messages": [],
            "restarts": dict.fromkeys(RESTARTED, 0),
        }
        self._next_try = dict.fromkeys(RESTARTED, 0.0)
        self._backoff = dict.fromkeys(RESTARTED, 1.0)

    def say(self, msg: str) -> None:
        if self.stop.set:
            raise Stopped("stopped by `tu-analytics sandbox down` during start-up")
        log.info("%s", msg)
        self.progress["messages"].append(msg)
        write_progress(self.root, self.progress)

    def run(self) -> int:
        state = load_state(self.root)
        if state is None:
            raise SystemExit(f"no sandbox state in {self.root}")
        try:
            self._start(state)
        except BaseException as exc:
            log.exception("start-up failed")
            self.progress.update(phase="failed", error=str(exc) or type(exc).__name__)
            write_progress(self.root, self.progress)
            stop_all(state, self.root)
            return 1
        self.progress.update(phase="ready", ready_ms=int(time.time() * 1000))
        write_progress(self.root, self.progress)
        self._watch(state)
        stop_all(state, self.root)
        self.progress["phase"] = "stopped"
        write_progress(self.root, self.progress)
        return 0

    def _start(self, state: State) -> None:
        from . import provision
        from .services import spawn_registry, start_broker, wait_registry

        state.pids = {"supervisor": os.getpid()}
        t = time.monotonic()
        # The registry keeps its schemas in H2, not Kafka: both JVMs start side by side.
        self.say(f"starting Schema Registry on {state.registry_url}")
        state.pids["registry"] = spawn_registry(self.root, self.cache, state)
        self.say(f"starting Kafka broker on {state.bootstrap} (TLS on {state.tls_bootstrap})")
        state.pids["broker"] = start_broker(self.root, self.cache, state)
        save_state(self.root, state)
        provision.wait_broker_ready(state)
        self.say(f"  broker ready ({time.monotonic() - t:.1f} s); creating topics and ACLs")
        provision.create_topics(state)
        provision.create_acls(state)
        wait_registry(self.root, state, state.pids["registry"])
        state.schema_ids = provision.register_schemas(state)
        self.say(f"  registry ready ({time.monotonic() - t:.1f} s); schema ids {state.schema_ids}")
        from .streamer import mark_starting

        mark_starting(self.root)  # so the wait below sees this run's backfill, not the last one's
        for name in RESTARTED:
            state.pids[name] = self._spawn(name, state)
        save_state(self.root, state)
        self._wait_backfill(state)

    def _spawn(self, name: str, state: State) -> int:
        extra: list[str] = []
        if name == "streamer" and state.late_share is not None:
            extra = ["--late-share", repr(state.late_share)]
        return _procs.spawn(_procs.py_argv(name, self.root, *extra), self.root / f"{name}.log")

    def _wait_backfill(self, state: State) -> None:
        from .streamer import read_progress as streamer_progress

        deadline = time.monotonic() + self.timeout
        last = ""
        while True:
            self._check_alive(state)
            prog = streamer_progress(self.root)
            if prog.get("phase") == "live":
                break
            msg = f"  backfilling: {prog.get('produced', 0):,} records"
            if msg != last:
                self.say(msg)
                last = msg
            if time.monotonic() > deadline:
                raise SandboxError(f"backfill did not finish within {self.timeout:.0f} s")
            time.sleep(0.5)
        self.say(f"  backfill produced {prog.get('produced', 0):,} records; forwarding")
        told = time.monotonic()
        while (behind := forwarder_lag(state)) != 0:
            self._check_alive(state)
            if time.monotonic() > deadline:
                raise SandboxError(f"the forwarder is still {behind} records behind")
            if time.monotonic() - told > 3:
                self.say(f"  forwarder: {behind if behind is not None else '?'} records behind")
                told = time.monotonic()
            time.sleep(0.3)

    def _check_alive(self, state: State) -> None:
        for name in RESTARTED:
            if not _procs.alive(state.pids[name], self.root):
                logfile = self.root / f"{name}.log"
                raise SandboxError(
                    f"the {name} exited; last lines of {logfile}:\n{_procs.tail(logfile)}"
                )

    def _watch(self, state: State) -> None:
        while not self.stop.set:
            for name in RESTARTED:
                if not _procs.alive(state.pids.get(name, 0), self.root):
                    self._restart(name, state)
            self.stop.sleep(1.0)

    def _restart(self, name: str, state: State) -> None:
        now = time.monotonic()
        if now < self._next_try[name]:
            return
        log.warning("the %s is not running; starting it again", name)
        state.pids[name] = self._spawn(name, state)
        save_state(self.root, state)
        self.progress["restarts"][name] += 1
        write_progress(self.root, self.progress)
        # Quick first restarts; a process that keeps dying is tried less and less often.
        self._next_try[name] = now + self._backoff[name]
        self._backoff[name] = min(30.0, self._backoff[name] * 2)


def forwarder_lag(state: State, timeout: float = 5) -> int | None:
    """Records on the platform topics not yet forwarded (committed); None if unknown."""
    from confluent_kafka import Consumer, KafkaException, TopicPartition

    from .provision import operator_kafka_config

    consumer = Consumer(
        {
            **operator_kafka_config(state),
            "group.id": FORWARDER_GROUP,
            "enable.auto.commit": False,
            "log_level": 2,
        }
    )
    try:
        tps = [TopicPartition(t, 0) for t in PLATFORM_TOPICS.values()]
        ends = [consumer.get_watermark_offsets(tp, timeout=timeout)[1] for tp in tps]
        committed = consumer.committed(tps, timeout=timeout)
        return sum(max(0, end - max(c.offset, 0)) for end, c in zip(ends, committed, strict=True))
    except KafkaException:
        return None
    finally:
        consumer.close()


def stop_all(state: State | None, root: Path) -> list[str]:
    """Stop every process of the sandbox in ``root`` but the supervisor, in a safe order."""
    stopped: list[str] = []
    pids = dict(state.pids) if state is not None else {}
    for name in STOP_ORDER:
        if _procs.alive(pids.get(name, 0), root):
            _procs.stop(pids[name], root)
            stopped.append(name)
    # Anything the state does not know (a corrupt state file, a crashed supervisor's children).
    for name, procs in _procs.owned(root).items():
        for proc in procs:
            if name != "supervisor" and proc.pid != os.getpid():
                _procs.stop(proc.pid, root)
                stopped.append(name)
    return stopped


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    parser = argparse.ArgumentParser()
    parser.add_argument("root", type=Path)
    parser.add_argument("--lock-fd", type=int, required=True)
    parser.add_argument("--cache", type=Path, default=None)
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()
    os.umask(0o077)
    # The descriptor stays open (and the flock held) until this process exits.
    os.set_inheritable(args.lock_fd, False)
    sup = Supervisor(args.root, args.cache or cache_dir(), args.timeout)
    raise SystemExit(sup.run())


if __name__ == "__main__":
    main()
