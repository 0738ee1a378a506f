"""Test tiers by folder: tests/unit (in-memory), tests/integration (the real sandbox),
tests/ui (a real Jupyter server in headless Chromium). Markers are added automatically."""

from __future__ import annotations

from pathlib import Path

import pytest

HERE = Path(__file__).parent


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        parts = Path(str(item.fspath)).relative_to(HERE).parts
        if parts[0] == "integration":
            item.add_marker(pytest.mark.integration)
        elif parts[0] == "ui":
            item.add_marker(pytest.mark.integration)
            item.add_marker(pytest.mark.ui)


# -- the sandbox, once per test session -------------------------------------------------------

import os  # noqa: E402
import signal  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from dataclasses import dataclass  # noqa: E402


@dataclass
class SandboxHandle:
    root: Path
    state: object

    def env(
        self, customer: str | None = None, fmt: str = "insights", admin: bool = False
    ) -> dict[str, str]:
        from tu_analytics.sandbox import manager

        return manager.env_vars(root=self.root, customer=customer, fmt=fmt, admin=admin)

    def settings(
        self, customer: str | None = None, fmt: str = "insights", admin: bool = False, **kw: object
    ):
        from tu_analytics import Settings

        return Settings.resolve(env=self.env(customer, fmt, admin), **kw)

    def connect(
        self, customer: str | None = None, fmt: str = "insights", admin: bool = False, **kw: object
    ):
        import tu_analytics

        return tu_analytics.connect(self.settings(customer, fmt, admin, **kw))

    @property
    def customers(self) -> list[str]:
        return list(self.state.customers)  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxHandle]:
    """The real sandbox (Kafka + Apicurio + forwarder + streamer) in a fresh directory on
    free ports; stopped at the end of the session."""
    from tu_analytics.sandbox import manager
    from tu_analytics.sandbox._procs import free_port
    from tu_analytics.sandbox._state import DEFAULT_PORTS

    # A SIGTERM (e.g. from `timeout`) becomes KeyboardInterrupt, so the `finally` below
    # still stops the sandbox instead of leaving its JVMs running.
    def _interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _interrupt)
    root = tmp_path_factory.mktemp("sandbox")
    ports = {name: free_port() for name in DEFAULT_PORTS}
    old = os.environ.get("TU_SANDBOX_DIR")
    os.environ["TU_SANDBOX_DIR"] = str(root)
    res = manager.up(root=root, ports=ports, backfill_days=3, say=lambda m: print(m, flush=True))
    try:
        yield SandboxHandle(root, res.state)
    finally:
        manager.down(root=root)
        if old is None:
            os.environ.pop("TU_SANDBOX_DIR", None)
        else:
            os.environ["TU_SANDBOX_DIR"] = old
