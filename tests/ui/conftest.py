"""Fixtures for the browser tier: a real JupyterLab server and headless Chromium.

The browser tier has a sandbox of its own, :data:`NIGHT_CLOCK` on its clock (Sunday 02:00 UTC,
when every European day site is closed): whatever the real hour, the pages show the fleet of a
weekend night, and the tests check from the page that machines still work (night shifts, the
24/7 sites in Australia). The session sandbox keeps the real clock for the other tiers.

The server runs on 127.0.0.1 on a free port with token auth, a temporary root directory and its
own config, settings, workspace and runtime directories (nothing of the user's Jupyter setup is
read or written), and the night sandbox's TU_* variables in its environment, so its kernels
connect to it. It is started once per module and stopped at the end, kernels included.
Chromium is Debian's (/usr/bin/chromium), driven by Playwright; screenshots go to artifacts/ui/,
and with ``TU_DOCS_SCREENSHOTS=1`` (scripts/screenshots) the README's pictures also to docs/.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "artifacts" / "ui"
DOCS = ROOT / "docs"
#: The night sandbox's clock: a Sunday, 02:00 UTC (03:00 in Copenhagen and Berlin).
NIGHT_CLOCK = "2026-11-29T02:00:00Z"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
]


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def docs_picture(artifacts: Path):
    """``keep(name)``: copy ``artifacts/ui/<name>`` to ``docs/<name>`` when
    ``TU_DOCS_SCREENSHOTS=1`` (how scripts/screenshots regenerates the README's pictures)."""

    def keep(name: str) -> None:
        if os.environ.get("TU_DOCS_SCREENSHOTS") == "1":
            shutil.copyfile(artifacts / name, DOCS / name)

    return keep


@dataclass
class NightSandbox:
    root: Path
    state: object

    def env(self) -> dict[str, str]:
        """TU_* variables for the first customer, as ``eval "$(tu-analytics sandbox env)"``."""
        from tu_analytics.sandbox import manager

        return manager.env_vars(root=self.root, customer=None, fmt="insights", admin=False)


@pytest.fixture(scope="session")
def night_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NightSandbox]:
    """A sandbox of the browser tier's own with :data:`NIGHT_CLOCK` on its clock
    (``TU_SANDBOX_CLOCK``, read at its first ``up``); 3 days of backfill, about 25 s."""
    from tu_analytics.sandbox import manager
    from tu_analytics.sandbox._procs import free_port
    from tu_analytics.sandbox._state import DEFAULT_PORTS
    from tu_analytics.sandbox.streamer import CLOCK_ENV

    _check_european_day_sites_closed(NIGHT_CLOCK)
    root = tmp_path_factory.mktemp("night-sandbox")
    ports = {name: free_port() for name in DEFAULT_PORTS}
    old = os.environ.get(CLOCK_ENV)
    os.environ[CLOCK_ENV] = NIGHT_CLOCK  # inherited by the supervisor and its streamer
    try:
        res = manager.up(root=root, ports=ports, backfill_days=3,
                         say=lambda m: print(m, flush=True))
    finally:
        if old is None:
            os.environ.pop(CLOCK_ENV, None)
        else:
            os.environ[CLOCK_ENV] = old
    try:
        yield NightSandbox(root, res.state)
    finally:
        manager.down(root=root)


def _check_european_day_sites_closed(clock: str) -> None:
    """At ``clock`` the fleet's schedule has no European machine at work but night shifts."""
    from tu_analytics.sandbox.fleet import build_fleet
    from tu_analytics.sandbox.simulator import Simulator
    from tu_analytics.sandbox.streamer import parse_clock

    working = Simulator(build_fleet(7), seed=7).working(parse_clock(clock))
    europe = {m.type for m in working if m.home_site.tz.startswith("Europe/")}
    assert europe <= {"generator", "light tower"}, europe


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Lab:
    url: str
    token: str
    root: Path
    log: Path
    pid: int

    def open_url(self, notebook: str) -> str:
        # ``reset``: a fresh workspace, so the notebook opened before is not restored beside it.
        return f"{self.url}/lab/tree/{notebook}?reset&token={self.token}"

    def api(self, path: str, method: str = "GET") -> object:
        req = urllib.request.Request(f"{self.url}{path}", method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=5) as resp:
            body = resp.read()
        return json.loads(body) if body else None

    def shutdown_kernels(self) -> None:
        """Stop every kernel (a notebook's live tail included) before the next notebook."""
        kernels = self.api("/api/kernels")
        assert isinstance(kernels, list)
        for kernel in kernels:
            self.api(f"/api/kernels/{kernel['id']}", method="DELETE")


def _write_settings(settings: Path) -> None:
    """JupyterLab user settings for a quiet, deterministic page."""
    files = {
        # No news or update check (no network here, and no toast over the notebook).
        "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {
            "fetchNews": "false", "checkForUpdates": False},
        # Render every cell: no virtual scrolling that would defer off-screen outputs. Start the
        # notebook's kernel without asking (a "Select Kernel" dialog shows when the notebook
        # opens before the kernel specs are loaded).
        "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {
            "windowingMode": "none", "autoStartDefaultKernel": True},
    }
    for rel, value in files.items():
        path = settings / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(value))


@pytest.fixture(scope="module")
def lab(night_sandbox, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    base = tmp_path_factory.mktemp("jupyterlab")
    root, settings = base / "root", base / "settings"
    root.mkdir()
    _write_settings(settings)
    port, token = _free_port(), secrets.token_hex(24)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TU_", "JUPYTER"))}
    env.update(night_sandbox.env())
    env.update({
        "JUPYTER_CONFIG_DIR": str(base / "config"),
        "JUPYTER_RUNTIME_DIR": str(base / "runtime"),
        "IPYTHONDIR": str(base / "ipython"),
        "TU_SANDBOX_DIR": str(night_sandbox.root),
    })
    log = base / "server.log"
    cmd = [
        sys.executable, "-m", "jupyterlab",
        "--ServerApp.ip=127.0.0.1",
        f"--ServerApp.port={port}",
        "--ServerApp.port_retries=0",
        f"--IdentityProvider.token={token}",
        f"--ServerApp.root_dir={root}",
        "--ServerApp.open_browser=False",
        "--ServerApp.terminals_enabled=False",
        f"--LabApp.user_settings_dir={settings}",
        f"--LabApp.workspaces_dir={base / 'workspaces'}",
        "--LabApp.news_url=None",
        "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate",
        "--LabApp.extension_manager=readonly",
    ]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")  # containers and CI often run as root
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    server = Lab(f"http://127.0.0.1:{port}", token, root, log, proc.pid)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"JupyterLab exited with {proc.returncode}:\n{log.read_text()}")
            try:
                server.api("/api/status")
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
                if time.monotonic() > deadline:
                    raise RuntimeError(
                        f"JupyterLab did not answer in 60 s:\n{log.read_text()}") from exc
                time.sleep(0.2)
        yield server
    finally:
        _stop_server(proc)


def _stop_server(proc: subprocess.Popen) -> None:
    """SIGTERM lets the server shut its kernels down; whatever is left of the server's own
    process group (it was started in a new session) is killed after 20 s."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # the group we created: kernels left behind, if any


@pytest.fixture(scope="module")
def browser() -> Iterator:
    from playwright.sync_api import sync_playwright

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium chromium-driver")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture(scope="module")
def colour_pixels(browser):
    """``count(png, {"name": "#rrggbb"}) -> {"name": pixels}``: how many pixels of a screenshot
    are within ``tolerance`` (per RGB channel) of each colour. The browser decodes the PNG (no
    imaging library needed here)."""

    def count(png: bytes, colours: dict[str, str], tolerance: int = 24) -> dict[str, int]:
        return _colour_pixels(browser, png, colours, tolerance)

    return count


def _colour_pixels(browser, png: bytes, colours: dict[str, str], tolerance: int) -> dict[str, int]:
    page = browser.new_page()
    try:
        page.set_content("<canvas id='c'></canvas>")
        return page.evaluate(
            """async ([b64, colours, tol]) => {
                const img = new Image();
                img.src = 'data:image/png;base64,' + b64;
                await img.decode();
                const c = document.getElementById('c');
                c.width = img.width; c.height = img.height;
                const ctx = c.getContext('2d');
                ctx.drawImage(img, 0, 0);
                const d = ctx.getImageData(0, 0, c.width, c.height).data;
                const want = Object.entries(colours).map(([k, hex]) => [k, [1, 3, 5].map(
                    i => parseInt(hex.slice(i, i + 2), 16))]);
                const out = Object.fromEntries(want.map(([k]) => [k, 0]));
                for (let p = 0; p < d.length; p += 4) {
                    for (const [k, [r, g, b]] of want) {
                        if (Math.abs(d[p] - r) <= tol && Math.abs(d[p + 1] - g) <= tol
                            && Math.abs(d[p + 2] - b) <= tol) out[k]++;
                    }
                }
                return out;
            }""",
            [base64.b64encode(png).decode(), colours, tolerance],
        )
    finally:
        page.close()
