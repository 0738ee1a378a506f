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
        self._cache: dict[int, str | None] = {}

    def _client(self) -> Any:
        # A client per lookup round, closed after it: schemas are cached here, so the
        # registry is asked once per new id and no connection outlives the call.
        from confluent_kafka.schema_registry import SchemaRegistryClient

        conf = self._settings.registry_config()
        conf.setdefault("timeout", 10)
        conf.setdefault("max.retries", 1)
        return SchemaRegistryClient(conf)

    def schemas(self, ids: Iterable[int]) -> dict[int, str | None]:
        """Writer schema text for each id; ``None`` where the registry has no such id."""
        ids = list(ids)
        missing = [sid for sid in ids if sid not in self._cache]
        if missing:
            with self._client() as client:
                for sid in missing:
                    self._cache[sid] = self._fetch(client, sid)
        return {sid: self._cache[sid] for sid in ids}

    def latest_for_topic(self, topic: str) -> str | None:
        """The newest value schema of ``topic`` (TopicNameStrategy), for empty windows."""
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        try:
            with self._client() as client:
                return str(client.get_latest_version(f"{topic}-value").schema.schema_str)
        except SchemaRegistryError:
            return None
        except Exception:  # unreachable registry: the empty window simply has fewer columns
            return None

    def _fetch(self, client: Any, sid: int) -> str | None:
        from confluent_kafka.schema_registry.error import SchemaRegistryError

        try:
            schema = client.get_schema(sid)
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
