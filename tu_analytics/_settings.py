"""Connection settings: the Streaming API's five parameters, with secrets masked.

A user connects with bootstrap servers, SASL credentials, a topic, a Schema Registry URL
and registry credentials, plus the security protocol (``SASL_SSL`` on Confluent Cloud,
``SASL_PLAINTEXT`` in the local sandbox), a CA file for TLS (``ssl_ca_location``) and the
``lateness`` windows allow for out-of-order timestamps (default 5m). Settings come from
keyword arguments, the ``TU_*`` environment variables (what ``tu-analytics sandbox env``
prints) or a named profile in ``profiles.toml``; explicit keywords win over the profile,
the profile over the environment. Nothing here touches the network.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .errors import ConfigurationError

MASK = "********"

#: Environment variable for each setting.
ENV_VARS: dict[str, str] = {
    "bootstrap_servers": "TU_BOOTSTRAP_SERVERS",
    "security_protocol": "TU_SECURITY_PROTOCOL",
    "sasl_mechanism": "TU_SASL_MECHANISM",
    "sasl_username": "TU_SASL_USERNAME",
    "sasl_password": "TU_SASL_PASSWORD",
    "topic": "TU_TOPIC",
    "schema_registry_url": "TU_SCHEMA_REGISTRY_URL",
    "schema_registry_username": "TU_SCHEMA_REGISTRY_USERNAME",
    "schema_registry_password": "TU_SCHEMA_REGISTRY_PASSWORD",
    "group_prefix": "TU_GROUP_PREFIX",
    "ssl_ca_location": "TU_SSL_CA_LOCATION",
    "lateness": "TU_LATENESS",
}
_SECRETS = frozenset({"sasl_password", "schema_registry_password"})
_PROTOCOLS = frozenset({"SASL_SSL", "SASL_PLAINTEXT", "SSL", "PLAINTEXT"})
#: Nothing published bounds the disorder of a topic's timestamps; 5 minutes covers what a
#: parallel forwarding job produces. Raise it with TU_LATENESS / lateness= if a
#: DisorderWarning says a step came close.
DEFAULT_LATENESS_MS = 300_000


class Secret:
    """A string that never shows itself in ``repr``/``str``/f-strings."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def get(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return f"Secret('{MASK}')"

    def __str__(self) -> str:
        return MASK

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __reduce__(self) -> Any:
        # Pickling would write the secret to disk in clear; refuse rather than leak.
        raise TypeError("Secret values cannot be pickled")


def default_profiles_path() -> Path:
    from platformdirs import user_config_dir

    return Path(
        os.environ.get("TU_PROFILES", Path(user_config_dir("tu-analytics")) / "profiles.toml")
    )


@dataclass(frozen=True, repr=False)
class Settings:
    """Typed connection settings. Secrets are :class:`Secret` and masked in every repr."""

    bootstrap_servers: str
    topic: str
    schema_registry_url: str
    sasl_username: str | None = None
    sasl_password: Secret | None = None
    schema_registry_username: str | None = None
    schema_registry_password: Secret | None = None
    security_protocol: str = "SASL_SSL"
    sasl_mechanism: str = "PLAIN"
    #: Consumer group ids start with this (ACLs often allow only a prefix); default: username.
    group_prefix: str | None = None
    #: CA certificate file (PEM) for TLS to the broker and an https registry; default: system CAs.
    ssl_ca_location: str | None = None
    #: How far a partition's Kafka timestamps may go backwards: windows read offsets up to
    #: ``end + lateness`` and filter by timestamp (``lateness="5m"``, ``TU_LATENESS``).
    lateness_ms: int = DEFAULT_LATENESS_MS
    extra_kafka: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        missing = [
            n for n in ("bootstrap_servers", "topic", "schema_registry_url") if not getattr(self, n)
        ]
        if missing:
            hint = ", ".join(ENV_VARS[n] for n in missing)
            raise ConfigurationError(
                f"missing connection settings: {', '.join(missing)}. Pass them to connect(), "
                f"set {hint}, or start the local sandbox: "
                'tu-analytics sandbox up && eval "$(tu-analytics sandbox env)"'
            )
        proto = self.security_protocol.upper()
        if proto not in _PROTOCOLS:
            raise ConfigurationError(
                f"security_protocol {self.security_protocol!r} is not one of {sorted(_PROTOCOLS)}"
            )
        object.__setattr__(self, "security_protocol", proto)
        if proto.startswith("SASL") and not (self.sasl_username and self.sasl_password):
            raise ConfigurationError(
                f"{proto} needs sasl_username and sasl_password "
                f"({ENV_VARS['sasl_username']}, {ENV_VARS['sasl_password']})"
            )
        if bool(self.schema_registry_username) != bool(self.schema_registry_password):
            raise ConfigurationError(
                "schema_registry_username and schema_registry_password go together"
            )
        _check_bootstrap(self.bootstrap_servers)
        _check_registry_url(self.schema_registry_url)
        if isinstance(self.lateness_ms, bool) or not isinstance(self.lateness_ms, int) or (
            self.lateness_ms < 0
        ):
            raise ConfigurationError(
                f"lateness_ms must be a whole number of milliseconds >= 0, not {self.lateness_ms!r}"
            )

    # -- construction -------------------------------------------------------------------

    @classmethod
    def resolve(
        cls,
        *,
        profile: str | None = None,
        env: Mapping[str, str] | None = None,
        profiles_path: Path | None = None,
        **kwargs: Any,
    ) -> Settings:
        """Merge environment < profile < keyword arguments into settings."""
        known = {f.name for f in fields(cls)} | {"lateness"}
        unknown = set(kwargs) - known
        if unknown:
            raise ConfigurationError(f"unknown setting(s): {', '.join(sorted(unknown))}")
        environ = os.environ if env is None else env
        values = _lateness_to_ms({n: environ[v] for n, v in ENV_VARS.items() if environ.get(v)})
        profile = profile or environ.get("TU_PROFILE")
        if profile:
            path = profiles_path or default_profiles_path()
            values.update(_lateness_to_ms(_read_profile(profile, path)))
        values.update(_lateness_to_ms({k: v for k, v in kwargs.items() if v is not None}))
        for name in _SECRETS:
            if isinstance(values.get(name), str):
                values[name] = Secret(values[name])
        for name in ("bootstrap_servers", "topic", "schema_registry_url"):
            values.setdefault(name, "")
        return cls(**values)

    # -- client configurations -----------------------------------------------------------

    def kafka_config(self) -> dict[str, Any]:
        """librdkafka configuration (contains the secret: never log it)."""
        conf: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.security_protocol,
        }
        if self.security_protocol.startswith("SASL"):
            conf["sasl.mechanisms"] = self.sasl_mechanism
            conf["sasl.username"] = self.sasl_username
            assert self.sasl_password is not None
            conf["sasl.password"] = self.sasl_password.get()
        if self.ssl_ca_location and "SSL" in self.security_protocol:
            conf["ssl.ca.location"] = self.ssl_ca_location
        conf.update(self.extra_kafka)
        return conf

    def registry_config(self) -> dict[str, Any]:
        """confluent-kafka ``SchemaRegistryClient`` configuration (contains the secret)."""
        conf: dict[str, Any] = {"url": self.schema_registry_url}
        if self.ssl_ca_location and self.schema_registry_url.lower().startswith("https:"):
            conf["ssl.ca.location"] = self.ssl_ca_location
        if self.schema_registry_username and self.schema_registry_password:
            conf["basic.auth.user.info"] = (
                f"{self.schema_registry_username}:{self.schema_registry_password.get()}"
            )
        return conf

    @property
    def group_id(self) -> str:
        prefix = self.group_prefix or (self.sasl_username or "tu-analytics")
        sep = "" if prefix.endswith((".", "-", "_")) else "."
        return f"{prefix}{sep}tu-analytics"

    def secrets(self) -> list[str]:
        """The clear-text secrets, so error texts can be scrubbed of them."""
        return [s.get() for s in (self.sasl_password, self.schema_registry_password) if s]

    def masked(self) -> dict[str, str | None]:
        out: dict[str, str | None] = {}
        for f in fields(self):
            if f.name == "extra_kafka":
                continue
            value = getattr(self, f.name)
            out[f.name] = MASK if (f.name in _SECRETS and value) else value
        return out

    def __repr__(self) -> str:
        inner = ", ".join(f"{k}={v!r}" for k, v in self.masked().items() if v is not None)
        return f"Settings({inner})"

    __str__ = __repr__


def _read_profile(name: str, path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise ConfigurationError(f"profile {name!r} requested but {path} does not exist") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigurationError(f"{path} is not valid TOML: {exc}") from None
    profiles = data.get("profiles", {})
    if name not in profiles:
        raise ConfigurationError(
            f"profile {name!r} not found in {path} (have: {', '.join(sorted(profiles)) or 'none'})"
        )
    return dict(profiles[name])


def _lateness_to_ms(values: dict[str, Any]) -> dict[str, Any]:
    """One layer's ``lateness`` (kwarg, ``TU_LATENESS``, profile key) as ``lateness_ms``."""
    from ._timespec import parse_duration

    given = values.pop("lateness", None)
    if given is None:
        return values
    if isinstance(given, int) and not isinstance(given, bool):
        raise ConfigurationError(
            f"lateness={given!r} has no unit: say e.g. lateness='5m' (or lateness_ms={given})"
        )
    values["lateness_ms"] = int(parse_duration(given, allow_zero=True).total_seconds() * 1000)
    return values


def _check_bootstrap(servers: str) -> None:
    for entry in servers.split(","):
        address = entry.strip().rpartition("://")[2]  # librdkafka allows "SASL_SSL://h:p"
        host, sep, port = address.rpartition(":")
        bad_port = bool(sep) and not address.endswith("]") and not (
            host and port.isdigit() and 0 < int(port) < 65536
        )
        if not address or any(c.isspace() or c in "/?#@" for c in address) or bad_port:
            raise ConfigurationError(
                f"bootstrap_servers {servers!r} is not a comma-separated list of host:port "
                "(e.g. pkc-xxxx.europe-west1.gcp.confluent.cloud:9092)"
            )


def _check_registry_url(url: str) -> None:
    for entry in url.split(","):
        parts = urlsplit(entry.strip())
        try:
            ok = parts.scheme in ("http", "https") and bool(parts.hostname)
            _ = parts.port  # a port that is not a number raises ValueError
        except ValueError:
            ok = False
        if not ok:
            raise ConfigurationError(
                f"schema_registry_url {url!r} is not an http(s) URL "
                "(e.g. https://psrc-xxxx.europe-west1.gcp.confluent.cloud)"
            )


def scrub(text: str, secrets: list[str]) -> str:
    """Remove secrets from a driver's error text before it reaches a message or a log."""
    for s in secrets:
        if s:
            text = text.replace(s, MASK)
    return text
