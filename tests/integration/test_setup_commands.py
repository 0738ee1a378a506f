"""The README's demo command and Binder's set-up scripts, run as a user would run them.

Each brings up its own sandbox (fresh directory, free ports) and stops it afterwards.
"""

from __future__ import annotations

import json
import subprocess
import sys
import venv
from pathlib import Path

import pytest
from kafka_helpers import isolated_sandbox_env

REPO = Path(__file__).resolve().parents[2]


def _down(bin_dir: Path, env: dict[str, str]) -> None:
    subprocess.run(
        [str(bin_dir / "tu-analytics"), "sandbox", "down"],
        env=env,
        timeout=120,
        check=False,
        capture_output=True,
    )


def test_make_demo_writes_the_report(tmp_path: Path) -> None:
    env = isolated_sandbox_env(tmp_path / "sandbox")
    report = tmp_path / "report.html"
    try:
        out = subprocess.run(
            ["make", "-s", "demo"],
            cwd=REPO,
            env={**env, "DEMO_ARGS": f"-o {report}"},
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-3000:]
        assert "records:" in out.stdout
        assert "report:" in out.stdout
        html = report.read_text()
        assert "scattermap" in html
        assert len(html) > 1_000_000
    finally:
        _down(REPO / ".venv" / "bin", env)


@pytest.fixture(scope="module")
def fresh_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new virtual environment with binder/requirements.txt installed, as repo2docker does."""
    home = tmp_path_factory.mktemp("binder-venv")
    venv.EnvBuilder(with_pip=True).create(home)
    out = subprocess.run(
        [str(home / "bin" / "pip"), "install", "-q", "-r", "binder/requirements.txt"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return home


def test_binder_postbuild_and_start_leave_the_sandbox_up(fresh_venv: Path, tmp_path: Path) -> None:
    env = isolated_sandbox_env(tmp_path / "sandbox")
    env["PATH"] = f"{fresh_venv / 'bin'}:{env['PATH']}"
    env["VIRTUAL_ENV"] = str(fresh_venv)
    try:
        post = subprocess.run(
            ["bash", "binder/postBuild"],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
        assert post.returncode == 0, post.stderr[-3000:]
        # `start` runs before the notebook server; here the "server" prints what it inherited.
        start = subprocess.run(
            [
                "bash",
                "binder/start",
                sys.executable,
                "-c",
                "import os; print(os.environ['TU_TOPIC'], os.environ['TU_SECURITY_PROTOCOL'])",
            ],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=False,
        )
        assert start.returncode == 0, start.stderr[-3000:]
        assert "machine-insights SASL_PLAINTEXT" in start.stdout
        status = subprocess.run(
            [str(fresh_venv / "bin" / "tu-analytics"), "sandbox", "status", "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        st = json.loads(status.stdout)
        assert st["running"] is True
        assert all(st["processes"].values())
    finally:
        _down(fresh_venv / "bin", env)
