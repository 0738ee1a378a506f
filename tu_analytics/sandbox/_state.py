"""Where the sandbox keeps things, and the state file that ``up``/``down``/``env`` share.

Layout under ``TU_SANDBOX_DIR`` (default: the user's data directory):

    state.json          ports, credentials, schema ids, pids (it holds passwords)
    supervisor.json     the supervisor's phase, start-up messages, restarts (read by ``up``)
    forwarder.json      the forwarder's health: state, last commit, last error
    kafka/              server.properties, log4j2.properties, data/, broker.log
    tls/                the sandbox's own CA and the broker's certificate (SASL_SSL listener)
    registry/           H2 database files, registry.log
    forwarder.log, streamer.log, supervisor.log

Every directory is 0700 and every file 0600: the processes run with umask 077, so files the
broker creates later (segments, indexes, snapshots) get the same modes.

Jars live apart, under ``TU_SANDBOX_CACHE`` (default: the user's cache directory), so a
fresh sandbox directory reuses them.
"""

from __future__ import annotations

import json
import os
import secrets
import stat
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import SandboxError

KAFKA_VERSION = "4.1.1"
APICURIO_VERSION = "3.3.3"

DEFAULT_PORTS = {
    "kafka": 19092,
    "controller": 19093,
    "registry": 18081,
    "registry_management": 18082,
    "kafka_tls": 19094,
    "registry_tls": 18083,
}
PORT_ENV = {
    "kafka": "TU_SANDBOX_KAFKA_PORT",
    "controller": "TU_SANDBOX_CONTROLLER_PORT",
    "registry": "TU_SANDBOX_REGISTRY_PORT",
    "registry_management": "TU_SANDBOX_REGISTRY_MANAGEMENT_PORT",
    "kafka_tls": "TU_SANDBOX_KAFKA_TLS_PORT",
    "registry_tls": "TU_SANDBOX_REGISTRY_TLS_PORT",
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
    # Share of records the streamer writes with a late (out-of-order) Kafka timestamp;
    # None leaves the streamer's own default. Passed to it as ``--late-share``.
    late_share: float | None = None

    @property
    def bootstrap(self) -> str:
        return f"{HOST}:{self.ports['kafka']}"

    @property
    def tls_bootstrap(self) -> str:
        return f"{HOST}:{self.ports['kafka_tls']}"

    @property
    def registry_url(self) -> str:
        return f"http://{HOST}:{self.ports['registry']}/apis/ccompat/v7"

    @property
    def registry_tls_url(self) -> str:
        return f"https://{HOST}:{self.ports['registry_tls']}/apis/ccompat/v7"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> State:
        data = dict(data)
        data["operator"] = Credentials(**data["operator"])
        data["customers"] = {k: Credentials(**v) for k, v in data["customers"].items()}
        ports = {**DEFAULT_PORTS, **data["ports"]}
        if "kafka_tls" not in data["ports"]:
            # A sandbox from before the TLS listeners: ports next to its own.
            ports["kafka_tls"] = data["ports"]["kafka"] + 2
            ports["registry_tls"] = data["ports"]["registry"] + 2
        data["ports"] = ports
        return cls(**data)


def new_password() -> str:
    return secrets.token_urlsafe(18)


def new_credentials(name: str) -> Credentials:
    return Credentials(new_password(), f"{name}-sr", new_password())


def state_path(root: Path) -> Path:
    return root / "state.json"


def tls_dir(root: Path) -> Path:
    return root / "tls"


def ca_path(root: Path) -> Path:
    return tls_dir(root) / "ca.pem"


def load_state(root: Path) -> State | None:
    """The sandbox's state, None if there is none; `SandboxError` if it is unreadable."""
    path = state_path(root)
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    try:
        return State.from_json(json.loads(text))
    except (ValueError, KeyError, TypeError) as exc:
        raise SandboxError(
            f"the sandbox state {path} is unreadable ({type(exc).__name__}); "
            "`tu-analytics sandbox down` still stops the sandbox's processes, and "
            f"removing {root} gives a fresh sandbox on the next `up`"
        ) from None


def make_private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.chmod(0o700)


def write_private(path: Path, text: str) -> None:
    """Write ``text`` atomically into a file that is 0600 from its creation."""
    make_private_dir(path.parent)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.chmod(tmp, 0o600)
    tmp.replace(path)


def save_state(root: Path, state: State) -> None:
    write_private(state_path(root), json.dumps(state.to_json(), indent=1))


def read_json(path: Path) -> dict[str, Any]:
    """A small status file written by another process; {} while absent or half-written."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def lock_down(root: Path) -> None:
    """Directories 0700, files 0600 throughout ``root`` (a sandbox from an older version)."""
    for dirpath, _dirnames, filenames in os.walk(root):
        os.chmod(dirpath, 0o700)
        for name in filenames:
            path = os.path.join(dirpath, name)
            if stat.S_ISREG(os.lstat(path).st_mode):
                os.chmod(path, 0o600)
