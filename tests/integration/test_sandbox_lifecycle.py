"""`up`/`down` on bad input and across restarts, through the real CLI in subprocesses.

Each test uses its own sandbox directory and ports, so it never disturbs the session's
sandbox; every test checks that no process naming its directory is left behind.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from kafka_helpers import isolated_sandbox_env
from sandbox_checks import assert_exactly_once, counts

from tu_analytics.sandbox import _procs

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


def _start_up(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [*TU, "sandbox", "up", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


ONE_EACH = dict.fromkeys(("supervisor", "broker", "registry", "forwarder", "streamer"), 1)


def test_two_concurrent_ups_start_one_sandbox_that_writes_each_record_once(
    tmp_path: Path,
) -> None:
    root = tmp_path / "sbx"
    env = _env(root)
    try:
        first = _start_up(env, "--backfill-days", "0.05")
        second = _start_up(env, "--backfill-days", "0.05")
        outs = [p.communicate(timeout=300) for p in (first, second)]
        assert [first.returncode, second.returncode] == [0, 0], outs
        errs = " ".join(err for _, err in outs)
        # Exactly one of them started it; the other waited for its result.
        assert errs.count("starting Kafka broker") == 1
        assert "started by the other `up`" in errs or "already up" in errs
        assert counts(root) == ONE_EACH
        # A minute of live traffic later: still one set, and no record written twice.
        time.sleep(60)
        assert counts(root) == ONE_EACH
        assert assert_exactly_once(root) > 0
    finally:
        _down(env)
    assert counts(root) == {}
    assert _procs_naming(root) == []


def test_status_and_down_survive_a_corrupt_state_file(tmp_path: Path) -> None:
    root = tmp_path / "sbx"
    env = _env(root)
    try:
        assert _up(env, "--backfill-days", "0.01", "--late-share", "0.02").returncode == 0
        assert counts(root) == ONE_EACH
        # --late-share is kept in the state and handed to the streamer.
        assert json.loads((root / "state.json").read_text())["late_share"] == 0.02
        (streamer,) = _procs.owned(root.resolve())["streamer"]
        assert streamer.cmdline()[-2:] == ["--late-share", "0.02"]
        state = root / "state.json"
        state.write_text(state.read_text()[:100])  # truncated mid-write
        status = subprocess.run(
            [*TU, "sandbox", "status"], env=env, capture_output=True, text=True, timeout=60
        )
        assert status.returncode == 3
        assert "state.json is unreadable" in status.stdout
        assert "Traceback" not in status.stdout + status.stderr
        down = _down(env)
        assert down.returncode == 0, down.stderr
        assert "Traceback" not in down.stderr
        assert "stopped: supervisor, broker, registry, forwarder, streamer" in down.stderr
    finally:
        _down(env)
    assert counts(root) == {}
    assert _procs_naming(root) == []


def test_a_sandbox_next_door_is_not_mistaken_for_this_one(tmp_path: Path) -> None:
    # Ownership by exact path: `…/sbx` must not claim the processes of `…/sbx2`.
    env2 = _env(tmp_path / "sbx2")
    try:
        assert _up(env2, "--backfill-days", "0.01").returncode == 0
        env1 = _env(tmp_path / "sbx")
        assert counts(tmp_path / "sbx") == {}
        out = _down(env1)
        assert out.returncode == 0
        assert counts(tmp_path / "sbx2") == ONE_EACH
    finally:
        _down(env2)
    assert counts(tmp_path / "sbx2") == {}


def test_every_sandbox_option_is_described() -> None:
    import argparse

    from tu_analytics.cli import build_parser

    def subparsers(p: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
        (action,) = [a for a in p._actions if isinstance(a, argparse._SubParsersAction)]
        return dict(action.choices)

    sandbox = subparsers(build_parser())["sandbox"]
    for name, sub in subparsers(sandbox).items():
        for action in sub._actions:
            if action.option_strings and action.dest != "help":
                assert action.help, f"sandbox {name} {action.option_strings[0]} has no help"
    up_help = subparsers(sandbox)["up"].format_help()
    for option in ("--kafka-tls-port", "--late-share", "--backfill-days", "--seed"):
        assert option in up_help
