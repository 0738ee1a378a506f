"""Schema Registry access: writer schemas by id, cached for the connection's lifetime.

confluent-kafka's ``SchemaRegistryClient`` does the HTTP (basic auth, retries). A 404 for an
id is an answer (the record goes to the errors frame); anything else is a ``RegistryError``
with the secret scrubbed out of the text.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ._settings import Settings, scrub
from .errors import AuthenticationError, RegistryError


class Registry:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._client: Any = None
        self._cache: dict[int, str | None] = {}

    def _get_client(self) -> Any:
        if self._client is None:
            from confluent_kafka.schema_registry import SchemaRegistryClient

            conf = self._settings.registry_config()
            conf.setdefault("timeout", 10)
            conf.setdefault("max.retries", 1)
            self._client = SchemaRegistryClient(conf)
        return self._client

    def schemas(self, ids: Iterable[int]) -> dict[int, str | None]:
        """Writer schema text for each id; ``None`` where the registry has no such id."""
        out: dict[int, str | None] = {}
        for sid in ids:
            if sid not in self._cache:
                self._cache[sid] = self._fetch(sid)
            out[sid] = self._cache[sid]
        return out

    def latest_for_topic(self, topic: str) -> str | None:
        """The newest value schema of ``topic`` (TopicNameStrategy), for empty windows."""
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        try:
            return str(self._get_client().get_latest_version(f"{topic}-value").schema.schema_str)
        except SchemaRegistryError:
            return None
        except Exception:  # unreachable registry: the empty window simply has fewer columns
            return None

    def _fetch(self, sid: int) -> str | None:
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        try:
            schema = self._get_client().get_schema(sid)
        except SchemaRegistryError as exc:
            if exc.http_status_code == 404:
                return None
            text = scrub(str(exc), self._settings.secrets())
            if exc.http_status_code in (401, 403):
                raise AuthenticationError(
                    f"the Schema Registry at {self._settings.schema_registry_url} refused the "
                    f"registry credentials of {self._settings.schema_registry_username!r}: {text}"
                ) from None
            raise RegistryError(f"Schema Registry request for id {sid} failed: {text}") from None
        except Exception as exc:  # transport errors come from httpx under the client
            text = scrub(f"{type(exc).__name__}: {exc}", self._settings.secrets())
            raise RegistryError(
                f"the Schema Registry at {self._settings.schema_registry_url} could not be "
                f"reached: {text}"
            ) from None
        return str(schema.schema_str)
