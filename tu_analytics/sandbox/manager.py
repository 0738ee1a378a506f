"""``up`` / ``down`` / ``status`` / ``env``: the sandbox's lifecycle.

``up`` takes an exclusive ``flock`` on the sandbox directory, runs the checks that need
nothing started (Java, jars, free ports), writes the state and hands the lock to a new
supervisor (``supervisor.py``), which starts everything and keeps it running; ``up`` follows
its progress and returns once the backfill has reached the customers' topics. If the lock is
taken, a supervisor lives (or another ``up`` is starting one): ``up`` then starts nothing,
waits for that one's result and returns it. ``down`` stops the supervisor, which stops its
children, then anything else that names this directory, found by exact path through
``psutil``: it works without a readable state file, and is safe to run twice.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
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
    HOST,
    OPERATOR,
    PORT_ENV,
    State,
    ca_path,
    cache_dir,
    customer_topics,
    load_state,
    lock_down,
    make_private_dir,
    new_credentials,
    new_password,
    read_json,
    sandbox_dir,
    save_state,
)
from .supervisor import forwarder_lag, read_progress, stop_all, write_progress

SERVICES = ("supervisor", "broker", "registry", "forwarder", "streamer")
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


def _root(root: Path | None) -> Path:
    # One spelling of the directory: processes are matched by exact path.
    return (root or sandbox_dir()).expanduser().resolve()


def is_running(state: State, root: Path) -> bool:
    found = _procs.owned(_root(root))
    return all(found.get(s) for s in SERVICES)


def _try_lock(root: Path) -> int | None:
    fd = os.open(root, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
            return None
        raise
    return fd


def up(
    *,
    root: Path | None = None,
    cache: Path | None = None,
    ports: dict[str, int] | None = None,
    backfill_days: float = 3.0,
    seed: int = 7,
    late_share: float | None = None,
    say: Say = _quiet,
    timeout: float = 600,
) -> UpResult:
    t0 = time.monotonic()
    root = _root(root)
    cache = cache or cache_dir()
    make_private_dir(root)
    deadline = t0 + timeout
    waiting_told = False
    while time.monotonic() < deadline:
        fd = _try_lock(root)
        if fd is not None:
            try:
                state, downloaded = _launch(
                    fd, root, cache, ports, backfill_days, seed, late_share, say, timeout
                )
            finally:
                os.close(fd)
            try:
                state = _follow(root, state, say, deadline)
            except BaseException:
                down(root=root)  # what this `up` started, it stops: no orphans
                raise
            took = time.monotonic() - t0
            say(f"sandbox up in {took:.1f} s")
            return UpResult(state, False, took, downloaded)
        sup = read_progress(root)
        if sup.get("phase") == "ready" and _procs.alive(int(sup.get("pid", 0)), root):
            say(f"sandbox already up in {root}")
            return UpResult(_load(root), True, time.monotonic() - t0, False)
        if sup.get("phase") == "starting" and _procs.alive(int(sup.get("pid", 0)), root):
            if not waiting_told:
                say(f"another `up` is starting the sandbox in {root}; waiting for it")
                waiting_told = True
            state = _follow(root, None, _quiet, deadline)
            say(f"sandbox up in {root} (started by the other `up`)")
            return UpResult(state, True, time.monotonic() - t0, False)
        time.sleep(0.2)  # the holder is between taking the lock and starting its supervisor
    raise SandboxError(f"the sandbox in {root} did not come up within {timeout:.0f} s")


def _load(root: Path) -> State:
    state = load_state(root)
    if state is None:
        raise SandboxError(f"the sandbox state in {root} vanished")
    return state


def _new_state(ports: dict[str, int] | None, backfill_days: float, seed: int) -> State:
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
    return state


def _launch(
    fd: int,
    root: Path,
    cache: Path,
    ports: dict[str, int] | None,
    backfill_days: float,
    seed: int,
    late_share: float | None,
    say: Say,
    timeout: float,
) -> tuple[State, bool]:
    """Holding the lock: check, write the state, start the supervisor (which inherits it)."""
    state = load_state(root)
    leftovers = stop_all(state, root)  # e.g. children of a supervisor that was killed
    if leftovers:
        say(f"stopped what an earlier run left running: {', '.join(leftovers)}")
    if state is None:
        state = _new_state(ports, backfill_days, seed)
    if late_share is not None:
        state.late_share = late_share
    _preflight(state, cache)
    downloaded = _jars.ensure_jars(cache, say)
    lock_down(root)
    state.pids = {}
    save_state(root, state)
    write_progress(root, {"phase": "launching", "pid": 0, "messages": []})
    argv = _procs.py_argv("supervisor", root, "--lock-fd", str(fd), "--cache", str(cache))
    pid = _procs.spawn([*argv, "--timeout", str(timeout)], root / "supervisor.log", pass_fds=(fd,))
    write_progress(root, {"phase": "starting", "pid": pid, "messages": []})
    return state, downloaded


def _follow(root: Path, state: State | None, say: Say, deadline: float) -> State:
    """Print the supervisor's progress until it is ready (its state) or failed (raise)."""
    shown = 0
    while time.monotonic() < deadline:
        sup = read_progress(root)
        messages = sup.get("messages", [])
        for msg in messages[shown:]:
            say(msg)
        shown = max(shown, len(messages))
        phase = sup.get("phase")
        if phase == "ready":
            return _load(root)
        if phase == "failed":
            raise SandboxError(str(sup.get("error", "the sandbox failed to start")))
        pid = int(sup.get("pid", 0))
        if phase == "starting" and pid and not _procs.alive(pid, root):
            # Its progress file may lag its exit by a moment.
            time.sleep(0.5)
            if read_progress(root).get("phase") in ("ready", "failed"):
                continue
            log = root / "supervisor.log"
            raise SandboxError(f"the sandbox supervisor exited:\n{_procs.tail(log)}")
        time.sleep(0.2)
    raise SandboxError(f"the sandbox in {root} was not ready in time")


def _preflight(state: State, cache: Path) -> None:
    # All checks before anything starts, so a failure leaves nothing behind.
    _jars.find_java(17)
    _jars.find_registry_java(21)
    if not _jars.jars_cached(cache):
        _jars.find_mvn()
    busy = [name for name, port in state.ports.items() if not _procs.port_free(port)]
    if busy:
        ports = "; ".join(f"{name} port {state.ports[name]}" for name in busy)
        hints = ", ".join(PORT_ENV[n] for n in busy)
        raise SandboxError(
            f"{ports} on {HOST} already in use. Stop whatever holds it, or choose "
            f"other ports ({hints}, or --kafka-port/--registry-port) — or, if it is an earlier "
            "sandbox, run `tu-analytics sandbox down` first."
        )


def down(*, root: Path | None = None, say: Say = _quiet) -> list[str]:
    root = _root(root)
    state: State | None = None
    try:
        state = load_state(root)
    except SandboxError as exc:
        say(f"{exc}; stopping the processes that name {root}")
    found = _procs.owned(root)
    if not found:
        if state is None and not (root / "state.json").exists():
            say(f"no sandbox in {root}; nothing to stop")
        else:
            say("sandbox was not running")
        return []
    # The supervisor stops its children in order; anything left after it goes too.
    for proc in found.get("supervisor", []):
        _procs.stop(proc.pid, root, timeout=120)
    stop_all(state, root)
    with contextlib.suppress(OSError):
        sup = read_progress(root)
        write_progress(root, {**sup, "phase": "stopped"})
    if state is not None:
        state.pids = {}
        save_state(root, state)
    stopped = [name for name in SERVICES if name in found]
    say(f"stopped: {', '.join(stopped)}")
    return stopped


def status(*, root: Path | None = None) -> dict[str, Any]:
    root = _root(root)
    found = _procs.owned(root)
    procs = {s: bool(found.get(s)) for s in SERVICES}
    out: dict[str, Any] = {
        "running": False,
        "directory": str(root),
        "customers": [],
        "broker": None,
        "registry": None,
        "processes": procs,
        "error": None,
    }
    try:
        state = load_state(root)
    except SandboxError as exc:
        out["error"] = str(exc)
        return out
    if state is None:
        return out
    from .fleet import build_fleet
    from .streamer import read_progress as streamer_progress

    counts: dict[str, int] = {}
    for m in build_fleet(state.seed).machines:
        counts[m.customer] = counts.get(m.customer, 0) + 1
    sup = read_progress(root)
    out.update(
        running=all(procs.values()),
        broker=state.bootstrap,
        broker_tls=state.tls_bootstrap,
        ca=str(ca_path(root)),
        registry=state.registry_url,
        registry_tls=state.registry_tls_url,
        schema_ids=state.schema_ids,
        streamer=streamer_progress(root),
        supervisor={k: sup.get(k) for k in ("phase", "pid", "restarts")},
        forwarder=_forwarder_health(state, root, procs),
        customers=[
            {"name": c, "machines": counts.get(c, 0), "topics": customer_topics(c)}
            for c in state.customers
        ],
    )
    return out


def _forwarder_health(state: State, root: Path, procs: dict[str, bool]) -> dict[str, Any]:
    from .forwarder import health_path

    health = read_json(health_path(root))
    lag = forwarder_lag(state, timeout=3) if procs["broker"] else None
    beat = health.get("heartbeat_ms")
    age = (time.time() * 1000 - beat) / 1000 if isinstance(beat, (int, float)) else None
    healthy = procs["forwarder"] and health.get("state") == "ok" and age is not None and age < 30
    return {
        "healthy": bool(healthy),
        "state": health.get("state"),
        "lag": lag,
        "heartbeat_age_s": None if age is None else round(age, 1),
        "last_error": health.get("error"),
        "forwarded": health.get("forwarded"),
    }


def env_vars(
    *,
    root: Path | None = None,
    customer: str | None = None,
    fmt: str = "insights",
    admin: bool = False,
    tls: bool = False,
) -> dict[str, str]:
    """The TU_* settings for a customer (or the operator); ``tls`` for the SASL_SSL listener."""
    root = _root(root)
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
    transport = {"TU_BOOTSTRAP_SERVERS": state.bootstrap, "TU_SECURITY_PROTOCOL": "SASL_PLAINTEXT"}
    if tls:
        transport = {
            "TU_BOOTSTRAP_SERVERS": state.tls_bootstrap,
            "TU_SECURITY_PROTOCOL": "SASL_SSL",
            "TU_SSL_CA_LOCATION": str(ca_path(root)),
        }
    registry = state.registry_tls_url if tls else state.registry_url
    return {
        **transport,
        "TU_SASL_USERNAME": user,
        "TU_SASL_PASSWORD": pw,
        "TU_TOPIC": customer_topics(name)[fmt],
        "TU_TOPIC_INSIGHTS": customer_topics(name)["insights"],
        "TU_TOPIC_RAW": customer_topics(name)["raw"],
        "TU_SCHEMA_REGISTRY_URL": registry,
        "TU_SCHEMA_REGISTRY_USERNAME": sr_user,
        "TU_SCHEMA_REGISTRY_PASSWORD": sr_pw,
    }
