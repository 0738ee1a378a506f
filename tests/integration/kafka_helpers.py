"""Test helpers: a plain confluent-kafka reader (the independent reference the tests compare
against), the environment for a sandbox of a test's own, child processes reaped after each
test, and commands run as the unprivileged user ``nobody`` (the tests run as root)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import time
from pathlib import Path

from confluent_kafka import Consumer, TopicPartition


def _kafka_conf(env: dict[str, str], **extra: object) -> dict[str, object]:
    return {
        "bootstrap.servers": env["TU_BOOTSTRAP_SERVERS"],
        "security.protocol": env["TU_SECURITY_PROTOCOL"],
        "sasl.mechanisms": "PLAIN",
        "sasl.username": env["TU_SASL_USERNAME"],
        "sasl.password": env["TU_SASL_PASSWORD"],
        **extra,
    }


def read_all(env: dict[str, str], topic: str, before_ms: int | None = None):
    """A plain consumer: every record of ``topic`` up to the high watermarks taken now."""
    group = f"{env['TU_SASL_USERNAME']}.test-{time.monotonic_ns()}"
    c = Consumer(_kafka_conf(env, **{"group.id": group, "enable.auto.commit": False}))
    try:
        md = c.list_topics(topic, timeout=10)
        parts = sorted(md.topics[topic].partitions)
        ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in parts}
        todo = {p for p in parts if ends[p] > 0}
        c.assign([TopicPartition(topic, p, 0) for p in todo])
        out = []
        while todo:
            for m in c.consume(10000, timeout=2):
                if m.error():
                    continue
                p = m.partition()
                if p in todo and m.offset() < ends[p]:
                    ts = m.timestamp()[1]
                    if before_ms is None or ts < before_ms:
                        out.append((p, m.offset(), ts, m.key(), m.value()))
            # Done by position, not by the last offset seen: a range may end in a
            # transaction marker or an aborted record, which are never delivered.
            for tp in c.position([TopicPartition(topic, p) for p in todo]):
                if tp.offset >= ends[tp.partition]:
                    todo.discard(tp.partition)
        return out
    finally:
        c.close()


def sr_auth(env: dict[str, str]) -> str:
    return f"{env['TU_SCHEMA_REGISTRY_USERNAME']}:{env['TU_SCHEMA_REGISTRY_PASSWORD']}"


def isolated_sandbox_env(root: Path, **extra: str) -> dict[str, str]:
    """The environment for a sandbox of one test's own: its directory, free ports, no TU_*."""
    from tu_analytics.sandbox._procs import free_port
    from tu_analytics.sandbox._state import PORT_ENV

    env = {k: v for k, v in os.environ.items() if not k.startswith("TU_")}
    env["TU_SANDBOX_DIR"] = str(root)
    env.update({var: str(free_port()) for var in PORT_ENV.values()})
    env.update(extra)
    return env


class Children:
    """Processes a test started: killed if still running, and their pipes closed, when the
    test ends (the ``children`` fixture of ``conftest.py``)."""

    def __init__(self) -> None:
        self._procs: list[subprocess.Popen[str]] = []

    def start(self, cmd: list[str], env: dict[str, str], *,
              stdout: int = subprocess.PIPE) -> subprocess.Popen[str]:
        """``cmd`` with the test's environment plus ``env``; stderr (and by default stdout)
        as text pipes."""
        proc = subprocess.Popen(cmd, env={**os.environ, **env}, stdout=stdout,
                                stderr=subprocess.PIPE, text=True)
        self._procs.append(proc)
        return proc

    def reap(self) -> None:
        while self._procs:
            proc = self._procs.pop()
            if proc.poll() is None:
                proc.kill()
            proc.communicate()


NOBODY = ["setpriv", "--reuid=nobody", "--regid=nogroup", "--clear-groups"]


def as_nobody(*argv: str, env: dict[str, str] | None = None,
              timeout: float = 30) -> subprocess.CompletedProcess[str]:
    """``argv`` run as ``nobody`` (no supplementary groups), its output captured."""
    return subprocess.run([*NOBODY, *argv], capture_output=True, text=True, timeout=timeout,
                          check=False, env=env)


def python_as_nobody() -> tuple[list[str], dict[str, str]]:
    """A command prefix and environment that run this checkout's Python code as ``nobody``.

    The test interpreter itself when ``nobody`` may run it; otherwise (a venv whose Python
    lives under /root, which ``nobody`` cannot enter) the system Python of the same version,
    with the venv's packages and this checkout on ``PYTHONPATH``: the same code and the
    same installed libraries, one interpreter build apart."""
    if as_nobody(sys.executable, "-c", "pass").returncode == 0:
        return [*NOBODY, sys.executable], {}
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    system = shutil.which(version, path="/usr/local/bin:/usr/bin:/bin")
    assert system is not None, (
        f"nobody cannot run {sys.executable}, and there is no system {version} to run this "
        "checkout's code as another user")
    import tu_analytics

    paths = [str(Path(tu_analytics.__file__).parents[1]), sysconfig.get_paths()["purelib"],
             sysconfig.get_paths()["platlib"]]
    return [*NOBODY, system], {"PYTHONPATH": os.pathsep.join(dict.fromkeys(paths)),
                               "PYTHONNOUSERSITE": "1", "HOME": "/nonexistent"}
