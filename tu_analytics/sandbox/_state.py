"""Where the sandbox keeps things, and the state file that ``up``/``down``/``env`` share.

Layout under ``TU_SANDBOX_DIR`` (default: the user's data directory):

    state.json          ports, credentials, schema ids, pids (mode 0600: it holds passwords)
    kafka/              server.properties, log4j2.properties, data/, broker.log
    registry/           H2 database files, registry.log
    forwarder.log, streamer.log

Jars live apart, under ``TU_SANDBOX_CACHE`` (default: the user's cache directory), so a
fresh sandbox directory reuses them.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

KAFKA_VERSION = "4.1.1"
APICURIO_VERSION = "3.3.3"

DEFAULT_PORTS = {
    "kafka": 19092,
    "controller": 19093,
    "registry": 18081,
    "registry_management": 18082,
}
PORT_ENV = {
    "kafka": "TU_SANDBOX_KAFKA_PORT",
    "controller": "TU_SANDBOX_CONTROLLER_PORT",
    "registry": "TU_SANDBOX_REGISTRY_PORT",
    "registry_management": "TU_SANDBOX_REGISTRY_MANAGEMENT_PORT",
}
HOST = "127.0.0.1"
OPERATOR = "operator"
PLATFORM_TOPICS = {"insights": "platform.machine-insights", "raw": "platform.raw"}
FORWARDER_GROUP = "sandbox.forwarder"
RETENTION_MS = 14 * 24 * 3600 * 1000
CUSTOMER_PARTITIONS = 3


def sandbox_dir() -> Path:
    env = os.environ.get("TU_SANDBOX_DIR")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_data_dir

    return Path(user_data_dir("tu-analytics")) / "sandbox"


def cache_dir() -> Path:
    env = os.environ.get("TU_SANDBOX_CACHE")
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("tu-analytics"))


def customer_topics(customer: str) -> dict[str, str]:
    return {
        "insights": f"trackunit.{customer}.machine-insights",
        "raw": f"trackunit.{customer}.raw",
    }


@dataclass
class Credentials:
    kafka_password: str
    registry_username: str
    registry_password: str


@dataclass
class State:
    """Everything ``up`` decided; read back by ``down``, ``status``, ``env`` and the tests."""

    ports: dict[str, int]
    operator: Credentials
    customers: dict[str, Credentials]
    seed: int = 7
    backfill_days: float = 3.0
    epoch_ms: int = 0
    v2_from_ms: int = 0
    schema_ids: dict[str, int] = field(default_factory=dict)
    pids: dict[str, int] = field(default_factory=dict)
    streamed_until_ms: int = 0

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.ports['kafka']}"

    @property
    def registry_url(self) -> str:
        return f"http://{HOST}:{self.ports['registry']}/apis/ccompat/v7"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> State:
        data = dict(data)
        data["operator"] = Credentials(**data["operator"])
        data["customers"] = {k: Credentials(**v) for k, v in data["customers"].items()}
        return cls(**data)


def new_password() -> str:
    return secrets.token_urlsafe(18)


def new_credentials(name: str) -> Credentials:
    return Credentials(new_password(), f"{name}-sr", new_password())


def state_path(root: Path) -> Path:
    return root / "state.json"


def load_state(root: Path) -> State | None:
    try:
        return State.from_json(json.loads(state_path(root).read_text()))
    except FileNotFoundError:
        return None


def save_state(root: Path, state: State) -> None:
    root.mkdir(parents=True, exist_ok=True)
    path = state_path(root)
    tmp = path.with_suffix(".tmp")
    # Created 0600 from the start: it holds every password of the sandbox.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(state.to_json(), f, indent=1)
    tmp.replace(path)
