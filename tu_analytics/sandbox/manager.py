"""``up`` / ``down`` / ``status`` / ``env``: the sandbox's lifecycle.

``up`` is idempotent: from nothing it resolves jars, formats storage, starts the broker,
provisions topics/users/ACLs, starts the registry and registers schemas, then starts the
forwarder and the streamer and returns once the backfill has reached the customers'
topics. If anything fails, everything it started is stopped again. ``down`` stops every
process ``up`` started (and only those) and is safe to run twice.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from ..errors import SandboxError
from . import _jars, _procs
from ._state import (
    DEFAULT_PORTS,
    FORWARDER_GROUP,
    HOST,
    OPERATOR,
    PLATFORM_TOPICS,
    PORT_ENV,
    State,
    cache_dir,
    customer_topics,
    load_state,
    new_credentials,
    new_password,
    sandbox_dir,
    save_state,
)
from .services import marker, start_broker, start_registry

SERVICES = ("broker", "registry", "forwarder", "streamer")
Say = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


@dataclass
class UpResult:
    state: State
    already_up: bool
    seconds: float
    downloaded: bool


def _ports(overrides: dict[str, int] | None) -> dict[str, int]:
    ports = dict(DEFAULT_PORTS)
    for name, var in PORT_ENV.items():
        if os.environ.get(var):
            ports[name] = int(os.environ[var])
    ports.update(overrides or {})
    return ports


def is_running(state: State, root: Path) -> bool:
    return all(_procs.alive(state.pids.get(s, 0), marker(root)) for s in SERVICES)


def up(
    *,
    root: Path | None = None,
    cache: Path | None = None,
    ports: dict[str, int] | None = None,
    backfill_days: float = 3.0,
    seed: int = 7,
    say: Say = _quiet,
    timeout: float = 600,
) -> UpResult:
    t0 = time.monotonic()
    root = root or sandbox_dir()
    cache = cache or cache_dir()
    state = load_state(root)
    if state is not None and is_running(state, root):
        say(f"sandbox already up in {root}")
        return UpResult(state, True, time.monotonic() - t0, False)
    if state is not None:
        # Partly running (e.g. a crash): stop what is left, then start it all again.
        _stop_all(state, root)
    else:
        from .fleet import build_fleet

        fleet = build_fleet(seed)
        now = datetime.now(UTC)
        epoch = now - timedelta(days=backfill_days)
        state = State(
            ports=_ports(ports),
            operator=new_credentials(OPERATOR),
            customers={c: new_credentials(c) for c in fleet.customers},
            seed=seed,
            backfill_days=backfill_days,
            epoch_ms=int(epoch.timestamp() * 1000),
            # The second schema version starts part-way through the backfilled data.
            v2_from_ms=int((epoch + (now - epoch) * 0.6).timestamp() * 1000),
        )
        state.operator.registry_username = OPERATOR
        state.operator.registry_password = new_password()

    _preflight(state, cache)
    downloaded = _jars.ensure_jars(cache, say)
    root.mkdir(parents=True, exist_ok=True)
    state.pids = {}
    save_state(root, state)
    try:
        _start(state, root, cache, say, timeout)
    except BaseException:
        say("start-up failed; stopping what was started")
        _stop_all(state, root)
        raise
    took = time.monotonic() - t0
    say(f"sandbox up in {took:.1f} s")
    return UpResult(state, False, took, downloaded)


def _preflight(state: State, cache: Path) -> None:
    # All checks before anything starts, so a failure leaves nothing behind.
    _jars.find_java(17)
    _jars.find_registry_java(21)
    if not _jars.jars_cached(cache):
        _jars.find_mvn()
    busy = [
        f"{name} port {port}" for name, port in state.ports.items() if not _procs.port_free(port)
    ]
    if busy:
        hints = ", ".join(f"{PORT_ENV[n]}" for n in state.ports if f"{n} port" in " ".join(busy))
        raise SandboxError(
            f"{'; '.join(busy)} on {HOST} already in use. Stop whatever holds it, or choose "
            f"other ports ({hints}, or --kafka-port/--registry-port) — or, if it is an earlier "
            "sandbox, run `tu-analytics sandbox down` first."
        )


def _start(state: State, root: Path, cache: Path, say: Say, timeout: float) -> None:
    from . import provision

    t = time.monotonic()
    say(f"starting Kafka broker on {state.bootstrap}")
    state.pids["broker"] = start_broker(root, cache, state)
    save_state(root, state)
    provision.wait_broker_ready(state)
    say(f"  broker ready ({time.monotonic() - t:.1f} s); creating topics and ACLs")
    provision.create_topics(state)
    provision.create_acls(state)
    t = time.monotonic()
    say(f"starting Schema Registry on {HOST}:{state.ports['registry']}")
    state.pids["registry"] = start_registry(root, cache, state)
    save_state(root, state)
    state.schema_ids = provision.register_schemas(state)
    say(f"  registry ready ({time.monotonic() - t:.1f} s); schema ids {state.schema_ids}")
    save_state(root, state)
    py = sys.executable
    from .streamer import mark_starting

    mark_starting(root)  # so the wait below sees this run's backfill, not the last one's
    for name in ("forwarder", "streamer"):
        state.pids[name] = _procs.spawn(
            [py, "-m", f"tu_analytics.sandbox.{name}", str(root)], root / f"{name}.log"
        )
    save_state(root, state)
    _wait_backfill(state, root, say, timeout)


def _wait_backfill(state: State, root: Path, say: Say, timeout: float) -> None:
    from confluent_kafka import Consumer, TopicPartition

    from .provision import operator_kafka_config
    from .streamer import read_progress

    deadline = time.monotonic() + timeout
    last = ""
    while True:
        for name in ("forwarder", "streamer"):
            if not _procs.alive(state.pids[name], str(root)):
                raise SandboxError(
                    f"the {name} exited; last lines of {root / (name + '.log')}:\n"
                    f"{_procs.tail(root / (name + '.log'))}"
                )
        prog = read_progress(root)
        if prog.get("phase") == "live":
            break
        msg = f"  backfilling: {prog.get('produced', 0):,} records"
        if msg != last:
            say(msg)
            last = msg
        if time.monotonic() > deadline:
            raise SandboxError(f"backfill did not finish within {timeout:.0f} s")
        time.sleep(1)
    say(f"  backfill produced {prog.get('produced', 0):,} records; waiting for the forwarder")
    consumer = Consumer(
        {**operator_kafka_config(state), "group.id": FORWARDER_GROUP, "enable.auto.commit": False}
    )
    try:
        md = consumer.list_topics(timeout=10)
        tps = [
            TopicPartition(t, p) for t in PLATFORM_TOPICS.values() for p in md.topics[t].partitions
        ]
        ends = {
            (tp.topic, tp.partition): consumer.get_watermark_offsets(tp, timeout=10)[1]
            for tp in tps
        }
        while True:
            committed = consumer.committed(tps, timeout=10)
            behind = sum(max(0, ends[(c.topic, c.partition)] - max(c.offset, 0)) for c in committed)
            if behind == 0:
                break
            if not _procs.alive(state.pids["forwarder"], str(root)):
                raise SandboxError(f"the forwarder exited:\n{_procs.tail(root / 'forwarder.log')}")
            if time.monotonic() > deadline:
                raise SandboxError(f"the forwarder is still {behind} records behind")
            time.sleep(0.5)
    finally:
        consumer.close()


def _stop_all(state: State, root: Path) -> list[str]:
    stopped = []
    # Producers first, then the forwarder, then the services they talk to.
    for name in ("streamer", "forwarder", "registry", "broker"):
        pid = state.pids.get(name, 0)
        if _procs.alive(pid, marker(root)):
            _procs.stop(pid, marker(root))
            stopped.append(name)
    return stopped


def down(*, root: Path | None = None, say: Say = _quiet) -> list[str]:
    root = root or sandbox_dir()
    state = load_state(root)
    if state is None:
        say(f"no sandbox in {root}; nothing to stop")
        return []
    stopped = _stop_all(state, root)
    state.pids = {}
    save_state(root, state)
    say(f"stopped: {', '.join(stopped)}" if stopped else "sandbox was not running")
    return stopped


def status(*, root: Path | None = None) -> dict[str, Any]:
    root = root or sandbox_dir()
    state = load_state(root)
    if state is None:
        return {
            "running": False,
            "directory": str(root),
            "customers": [],
            "broker": None,
            "registry": None,
            "processes": {},
        }
    from .fleet import build_fleet

    fleet = build_fleet(state.seed)
    counts: dict[str, int] = {}
    for m in fleet.machines:
        counts[m.customer] = counts.get(m.customer, 0) + 1
    procs = {s: _procs.alive(state.pids.get(s, 0), marker(root)) for s in SERVICES}
    from .streamer import read_progress

    return {
        "running": all(procs.values()),
        "directory": str(root),
        "broker": state.bootstrap,
        "registry": state.registry_url,
        "processes": procs,
        "schema_ids": state.schema_ids,
        "streamer": read_progress(root),
        "customers": [
            {"name": c, "machines": counts.get(c, 0), "topics": customer_topics(c)}
            for c in state.customers
        ],
    }


def env_vars(
    *,
    root: Path | None = None,
    customer: str | None = None,
    fmt: str = "insights",
    admin: bool = False,
) -> dict[str, str]:
    root = root or sandbox_dir()
    state = load_state(root)
    if state is None:
        raise SandboxError(f"no sandbox in {root}: run `tu-analytics sandbox up` first")
    if fmt not in ("insights", "raw"):
        raise SandboxError(f"--format must be insights or raw, not {fmt!r}")
    name = customer or next(iter(state.customers))
    if name not in state.customers:
        raise SandboxError(f"unknown customer {name!r}; have: {', '.join(state.customers)}")
    creds = state.customers[name]
    user, pw, sr_user, sr_pw = (
        name,
        creds.kafka_password,
        creds.registry_username,
        creds.registry_password,
    )
    if admin:
        op = state.operator
        user, pw, sr_user, sr_pw = OPERATOR, op.kafka_password, OPERATOR, op.registry_password
    return {
        "TU_BOOTSTRAP_SERVERS": state.bootstrap,
        "TU_SECURITY_PROTOCOL": "SASL_PLAINTEXT",
        "TU_SASL_USERNAME": user,
        "TU_SASL_PASSWORD": pw,
        "TU_TOPIC": customer_topics(name)[fmt],
        "TU_TOPIC_INSIGHTS": customer_topics(name)["insights"],
        "TU_TOPIC_RAW": customer_topics(name)["raw"],
        "TU_SCHEMA_REGISTRY_URL": state.registry_url,
        "TU_SCHEMA_REGISTRY_USERNAME": sr_user,
        "TU_SCHEMA_REGISTRY_PASSWORD": sr_pw,
    }
