"""`up`/`down` on bad input and across restarts, through the real CLI in subprocesses.

Each test uses its own sandbox directory and ports, so it never disturbs the session's
sandbox; every test checks that no process naming its directory is left behind.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kafka_helpers import isolated_sandbox_env

TU = [sys.executable, "-m", "tu_analytics.cli"]


def _procs_naming(path: Path) -> list[str]:
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (proc / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if str(path) in cmd and state != "Z":
            found.append(f"{proc.name}: {cmd[:120]}")
    return found


def _env(root: Path, **extra: str) -> dict[str, str]:
    return isolated_sandbox_env(root, **extra)


def _bin_with(tmp: Path, *tools: str) -> str:
    """A PATH directory holding only the named tools (to hide java or mvn)."""
    d = tmp / "bin"
    d.mkdir(exist_ok=True)
    for t in tools:
        real = shutil.which(t)
        assert real, f"{t} must exist on this machine for the test"
        (d / t).symlink_to(real)
    return str(d)


def _up(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*TU, "sandbox", "up", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def _down(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*TU, "sandbox", "down"], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_up_with_port_in_use_stops_with_one_clear_message(tmp_path: Path) -> None:
    root = tmp_path / "sbx"
    env = _env(root)
    with socket.socket() as s:
        s.bind(("127.0.0.1", int(env["TU_SANDBOX_KAFKA_PORT"])))
        s.listen()
        out = _up(env)
    assert out.returncode == 2
    assert f"port {env['TU_SANDBOX_KAFKA_PORT']}" in out.stderr
    assert "TU_SANDBOX_KAFKA_PORT" in out.stderr  # names the fix
    assert out.stderr.count("error:") == 1
    assert _procs_naming(root) == []


def test_up_without_java_names_the_fix(tmp_path: Path) -> None:
    root = tmp_path / "sbx"
    env = _env(root, PATH=_bin_with(tmp_path, "mvn"))
    env.pop("JAVA_HOME", None)
    out = _up(env)
    assert out.returncode == 2
    assert "Java 17+ was not found" in out.stderr
    assert "apt-get install" in out.stderr
    assert _procs_naming(root) == []


def test_up_without_maven_and_no_cached_jars_names_the_fix(tmp_path: Path) -> None:
    root = tmp_path / "sbx"
    env = _env(
        root, PATH=_bin_with(tmp_path, "java"), TU_SANDBOX_CACHE=str(tmp_path / "empty-cache")
    )
    out = _up(env)
    assert out.returncode == 2
    assert "Maven (mvn) was not found" in out.stderr
    assert "apt-get install maven" in out.stderr
    assert _procs_naming(root) == []


def test_down_twice_then_up_again_reuses_cached_jars(tmp_path: Path) -> None:
    root = tmp_path / "sbx"
    env = _env(root)
    first = _up(env, "--backfill-days", "0.05")
    try:
        assert first.returncode == 0, first.stderr
        assert _procs_naming(root), "up should leave its processes running"
        assert _down(env).returncode == 0
        assert _procs_naming(root) == []
        again = _down(env)
        assert again.returncode == 0
        assert "not running" in again.stderr
        # Without mvn on PATH: only cached jars can make this work.
        env_no_mvn = dict(env, PATH=_bin_with(tmp_path, "java"))
        t = time.monotonic()
        second = _up(env_no_mvn)
        assert second.returncode == 0, second.stderr
        assert "resolving" not in second.stderr
        status = subprocess.run(
            [*TU, "sandbox", "status", "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert '"running": true' in status.stdout
        print(f"warm up after down: {time.monotonic() - t:.1f} s")
    finally:
        _down(env)
    assert _procs_naming(root) == []


@pytest.mark.parametrize("fmt", ["insights", "raw"])
def test_env_before_up_says_how_to_start(tmp_path: Path, fmt: str) -> None:
    out = subprocess.run(
        [*TU, "sandbox", "env", "--format", fmt],
        env=_env(tmp_path / "none"),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert out.returncode == 2
    assert "tu-analytics sandbox up" in out.stderr
