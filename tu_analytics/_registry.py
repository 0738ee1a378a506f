"""Schema Registry access over the Confluent-compatible REST API (Confluent's registry, or
Apicurio under ``/apis/ccompat/v7``): writer schemas by id, cached for the connection.

Plain ``httpx`` requests, so each error is worded here: a 404 for an id is an answer (the
record goes to the errors frame); an authentication failure names the URL and user; other
failures are a :class:`RegistryError` with the status and the registry's own message, both
Confluent's (``error_code``/``message``) and Apicurio's (``status``/``title``/``detail``)
bodies understood. The calls of one window share one time budget (:meth:`Registry.deadline`):
the time spent waiting on the registry, not the window's length, so a registry that hangs
fails the window once, within the budget, not once per chunk.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any, Protocol

from ._settings import Settings, scrub
from .errors import ConfigurationError, RegistryError, authentication_error

#: Seconds a window's registry calls may take in all (its other work not counted).
DEADLINE_S = 8.0
#: Confluent's and Apicurio's ``error_code`` values that mean "no such schema / subject".
_NOT_FOUND_CODES = frozenset({40401, 40402, 40403, 404})
_ACCEPT = {"Accept": "application/vnd.schemaregistry.v1+json, application/json"}


class SchemaSource(Protocol):
    """What windows need of a registry (``Registry``, or a fake in tests)."""

    def deadline(self, seconds: float = ...) -> contextlib.AbstractContextManager[None]: ...
    def check(self, topic: str) -> None: ...
    def schemas(self, ids: Iterable[int]) -> dict[int, str | None]: ...
    def asked(self) -> dict[int, str | None]: ...
    def latest_for_topic(self, topic: str) -> str | None: ...


class Registry:
    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._cache: dict[int, str | None] = {}
        self._lock = threading.Lock()
        self._budget: float | None = None  # seconds of registry calls left in this window
        self._failed: RegistryError | None = None
        self.checked = False

    @property
    def url(self) -> str:
        return self._settings.schema_registry_url.rstrip("/")

    @contextlib.contextmanager
    def deadline(self, seconds: float = DEADLINE_S) -> Iterator[None]:
        """Registry calls in the block share ``seconds``; the first failure ends them all."""
        self._budget, self._failed = seconds, None
        try:
            yield
        finally:
            self._budget, self._failed = None, None

    def _get(self, path: str) -> Any:
        """GET ``path``; the response, or a project error naming the URL and user."""
        import httpx

        if self._failed is not None:
            raise self._failed
        left = DEADLINE_S if self._budget is None else self._budget
        if left <= 0:
            raise self._fail(f"no answer from the Schema Registry at {self.url} within the "
                             f"window's {DEADLINE_S:.0f} s registry deadline")
        s = self._settings
        auth = None
        if s.schema_registry_username and s.schema_registry_password:
            auth = (s.schema_registry_username, s.schema_registry_password.get())
        began = time.monotonic()
        try:
            # A private CA for the brokers' TLS covers an https registry too.
            resp = httpx.get(f"{self.url}{path}", auth=auth, timeout=min(left, DEADLINE_S),
                             verify=s.ssl_ca_location or True, headers=_ACCEPT)
        except httpx.HTTPError as exc:
            text = scrub(f"{type(exc).__name__}: {exc}", s.secrets())
            raise self._fail(f"the Schema Registry at {self.url} could not be reached: "
                             f"{text}") from None
        finally:
            if self._budget is not None:
                self._budget -= time.monotonic() - began
        if resp.status_code in (401, 403):
            raise authentication_error("registry", self.url, s.schema_registry_username,
                                       f"HTTP {resp.status_code} {_message(resp)}".strip(),
                                       topic=s.topic)
        return resp

    def _fail(self, text: str) -> RegistryError:
        s = self._settings
        self._failed = RegistryError(text, url=self.url, user=s.schema_registry_username,
                                     topic=s.topic)
        return self._failed

    def schemas(self, ids: Iterable[int]) -> dict[int, str | None]:
        """Writer schema text for each id; ``None`` where the registry has no such id."""
        ids = list(ids)
        with self._lock:  # chunks are decoded on several threads; ask once per id
            for sid in ids:
                if sid not in self._cache:
                    self._cache[sid] = self._fetch(sid)
            return {sid: self._cache[sid] for sid in ids}

    def asked(self) -> dict[int, str | None]:
        """Every id looked up so far, with its schema (``None``: not found)."""
        return dict(self._cache)

    def _fetch(self, sid: int) -> str | None:
        resp = self._get(f"/schemas/ids/{sid}")
        if resp.status_code == 200:
            return str(resp.json()["schema"])
        if _not_found(resp):
            return None
        raise RegistryError(
            f"Schema Registry request for schema id {sid} at {self.url} failed: HTTP "
            f"{resp.status_code} {_message(resp)}".rstrip(),
            schema_id=sid, url=self.url, user=self._settings.schema_registry_username)

    def latest_for_topic(self, topic: str) -> str | None:
        """The newest value schema of ``topic`` (TopicNameStrategy), for empty windows."""
        try:
            resp = self._get(f"/subjects/{topic}-value/versions/latest")
        except RegistryError:
            return None  # the empty window simply has fewer columns
        return str(resp.json()["schema"]) if resp.status_code == 200 else None

    def check(self, topic: str) -> None:
        """Once per connection: the URL answers the Confluent-compatible API and the topic's
        value subject exists there; else one ConfigurationError with the likely fix."""
        if self.checked:
            return
        resp = self._get(f"/subjects/{topic}-value/versions")
        versions = _json(resp)
        if resp.status_code == 200 and isinstance(versions, list):
            self.checked = True
            return
        if _not_found(resp) and isinstance(versions, dict) and "error_code" in versions:
            raise ConfigurationError(
                f"the Schema Registry at {self.url} has no subject {topic + '-value'!r} for "
                f"topic {topic!r} (HTTP {resp.status_code} {_message(resp)}): check the topic "
                "name and schema_registry_url", topic=topic, url=self.url,
                user=self._settings.schema_registry_username)
        raise ConfigurationError(
            f"{self.url} does not answer the Confluent-compatible Schema Registry API (HTTP "
            f"{resp.status_code} for /subjects/{topic}-value/versions). {_url_hint(self.url)}",
            topic=topic, url=self.url, user=self._settings.schema_registry_username)


def _json(resp: Any) -> Any:
    try:
        return resp.json()
    except ValueError:
        return None


def _not_found(resp: Any) -> bool:
    body = _json(resp)
    code = body.get("error_code") if isinstance(body, dict) else None
    return bool(resp.status_code == 404 and (code in _NOT_FOUND_CODES or code is None)
                and isinstance(body, dict))


def _message(resp: Any) -> str:
    """The registry's own words: Confluent's ``message`` or Apicurio's ``detail``/``title``."""
    body = _json(resp)
    if not isinstance(body, dict):
        return ""
    code = body.get("error_code") or body.get("status")
    text = body.get("message") or body.get("detail") or body.get("title") or ""
    return f"(code {code}: {text})" if code else f"({text})" if text else ""


def _url_hint(url: str) -> str:
    if "/apis/registry" in url:
        return ("That is Apicurio's own API; use its Confluent-compatible one: "
                f"{url.split('/apis/registry')[0]}/apis/ccompat/v7")
    if "ccompat" not in url and not url.rstrip("/").endswith("/v7"):
        return (f"If it is an Apicurio registry, add /apis/ccompat/v7 ({url}/apis/ccompat/v7); "
                "otherwise check the host and port of the registry.")
    return "Check the host and port of the registry."
