"""Starting, finding and stopping the sandbox's background processes without leaving orphans.

Each process gets its own session (process group), so stopping it also stops anything it
spawned, and runs with umask 077, so every file it creates is private. A process belongs to
a sandbox when one of its arguments names the sandbox directory *exactly*
(``-Dtu.sandbox=<dir>`` for the JVMs, ``<dir>`` after one of our module names for the Python
services): ``…/sbx`` never matches ``…/sbx2``. Processes are inspected through ``psutil``, so
this works where there is no ``/proc`` (macOS).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

import psutil

from ..errors import SandboxError
from ._state import HOST

# Children started by this process, so they can be reaped through their Popen (which then
# knows they ended) rather than leaving zombies or "still running" warnings behind.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}

PY_SERVICES = ("supervisor", "forwarder", "streamer")
MODULE_PREFIX = "tu_analytics.sandbox."


class StopFlag:
    """Set by SIGTERM/SIGINT, so a service loop can finish its batch, flush and exit cleanly."""

    def __init__(self) -> None:
        self.set = False
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.set = True

    def sleep(self, seconds: float) -> None:
        """Sleep, but wake within 0.1 s of a stop request."""
        deadline = time.monotonic() + seconds
        while not self.set and time.monotonic() < deadline:
            time.sleep(min(0.1, max(0.0, deadline - time.monotonic())))


def jvm_marker(root: Path) -> str:
    return f"-Dtu.sandbox={root}"


def py_argv(module: str, root: Path, *extra: str) -> list[str]:
    import sys

    return [sys.executable, "-m", MODULE_PREFIX + module, str(root), *extra]


def spawn(
    argv: list[str], log: Path, *, cwd: Path | None = None, pass_fds: tuple[int, ...] = ()
) -> int:
    log.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    with os.fdopen(fd, "ab") as out:
        proc = subprocess.Popen(
            argv,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            close_fds=True,
            pass_fds=pass_fds,
            umask=0o077,
        )
    _CHILDREN[proc.pid] = proc
    return proc.pid


def role(cmdline: list[str], root: Path) -> str | None:
    """Which sandbox service a command line is, if it belongs to the sandbox in ``root``."""
    if jvm_marker(root) in cmdline:
        if "kafka.Kafka" in cmdline:
            return "broker"
        if any(a.endswith("quarkus-run.jar") for a in cmdline):
            return "registry"
        return "jvm"
    for i, arg in enumerate(cmdline[:-1]):
        if arg.startswith(MODULE_PREFIX) and cmdline[i + 1] == str(root):
            name = arg.removeprefix(MODULE_PREFIX)
            return name if name in PY_SERVICES else None
    return None


def owned(root: Path) -> dict[str, list[psutil.Process]]:
    """Every live process of the sandbox in ``root``, by role."""
    found: dict[str, list[psutil.Process]] = {}
    for proc in psutil.process_iter(["cmdline", "status"]):
        try:
            if proc.info["status"] == psutil.STATUS_ZOMBIE:
                continue
            name = role(proc.info["cmdline"] or [], root)
        except (psutil.Error, OSError):
            continue
        if name is not None:
            found.setdefault(name, []).append(proc)
    return found


def alive(pid: int, root: Path) -> bool:
    """True if ``pid`` runs and belongs to the sandbox in ``root``."""
    if pid <= 0:
        return False
    child = _CHILDREN.get(pid)
    if child is not None:
        # Our own child: its Popen knows (and reaps it), with no window where a process
        # between fork and exec shows another command line.
        return child.poll() is None
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return role(proc.cmdline(), root) is not None
    except (psutil.Error, OSError):
        return False


def stop(pid: int, root: Path, timeout: float = 30.0) -> None:
    """SIGTERM the process group, wait, then SIGKILL. Safe if already gone or not ours."""
    if not alive(pid, root):
        return
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
    # A stopped (SIGSTOP) process would not see the SIGTERM until continued.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGCONT)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and alive(pid, root):
        time.sleep(0.1)
    # Also children that survived their leader (same process group).
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    for _ in range(50):
        if not alive(pid, root):
            break
        time.sleep(0.1)


def listens(pid: int, port: int) -> bool:
    """True if process ``pid`` itself holds a listening socket on ``HOST:port``."""
    try:
        conns = psutil.Process(pid).net_connections(kind="inet")
    except (psutil.Error, OSError):
        return False
    return any(c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port for c in conns)


def port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((HOST, port))
        except OSError:
            return False
    return True


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def wait_for(
    what: str, check: Callable[[], bool], timeout: float, pid: int, root: Path, log: Path
) -> None:
    """Poll ``check()`` until true; fail early (with the log's tail) if the process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if not alive(pid, root):
            child = _CHILDREN.get(pid)
            code = "" if child is None else f" (exit status {child.poll()})"
            raise SandboxError(
                f"{what} exited during start-up{code}; last lines of {log}:\n{tail(log)}"
            )
        time.sleep(0.2)
    raise SandboxError(
        f"{what} was not ready after {timeout:.0f} s; last lines of {log}:\n{tail(log)}"
    )


def tail(log: Path, lines: int = 15) -> str:
    try:
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
