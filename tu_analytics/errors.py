"""One exception tree for tu-analytics.

::

    TuAnalyticsError
    ├── ConfigurationError (ValueError)      settings missing or malformed
    ├── ConnectionError                      a service could not be reached or used
    │   ├── AuthenticationError              wrong SASL or registry credentials
    │   ├── AuthorizationError               credentials valid, resource not allowed
    │   ├── TopicNotFoundError (LookupError) the topic does not exist (or is hidden)
    │   └── RegistryError                    the Schema Registry failed
    ├── WindowError                          a window could not be completed
    │   ├── WindowTooLargeError              a size guard tripped (estimate and limit given)
    │   └── UnknownSchemasError              no record decoded: every schema id was unknown
    ├── SnapshotError                        a snapshot could not be written or read
    ├── ArchiveError                         a Delta archive could not be opened/read/written
    │   ├── ArchiveConflictError             another archiver committed first
    │   └── ArchiveSchemaError               a column's type changed incompatibly
    └── SandboxError (RuntimeError)          the local sandbox could not start/stop

Messages never contain secrets: callers pass masked settings into them, and driver errors
are wrapped with ``raise ... from`` after their text has been scrubbed.

Every error carries what a caller needs as attributes, ``None`` where it does not apply:
``topic``, ``partition``, ``offsets`` (first, one past the last), ``schema_id``, ``url`` and
``user`` (never a password). Errors raised from more than one place are built by one
function here (:func:`authentication_error`).
"""

from __future__ import annotations

import builtins
from typing import Literal


class TuAnalyticsError(Exception):
    """Base of every error tu-analytics raises on purpose."""

    def __init__(
        self,
        message: str = "",
        *,
        topic: str | None = None,
        partition: int | None = None,
        offsets: tuple[int, int] | None = None,
        schema_id: int | None = None,
        url: str | None = None,
        user: str | None = None,
    ) -> None:
        super().__init__(message)
        self.topic, self.partition, self.offsets = topic, partition, offsets
        self.schema_id, self.url, self.user = schema_id, url, user


class ConfigurationError(TuAnalyticsError, ValueError):
    """Settings are missing or malformed."""


class ConnectionError(TuAnalyticsError, builtins.ConnectionError):
    """A service (broker or registry) could not be reached or used."""


class AuthenticationError(ConnectionError):
    """The broker or the registry rejected the credentials."""


class AuthorizationError(ConnectionError):
    """The credentials are valid but may not use this resource."""


class TopicNotFoundError(ConnectionError, LookupError):
    """The topic does not exist, or these credentials may not see it."""


class RegistryError(ConnectionError):
    """The Schema Registry failed or is unreachable."""


class WindowError(TuAnalyticsError):
    """A window could not be completed; no partial frame is returned."""


class WindowTooLargeError(WindowError):
    """A window would exceed its ``max_records`` or ``max_bytes`` guard (or the memory
    available). ``estimate_bytes``/``limit_bytes`` (or ``records``/``limit_records``) say by
    how much."""

    def __init__(self, message: str = "", *, estimate_bytes: int | None = None,
                 limit_bytes: int | None = None, records: int | None = None,
                 limit_records: int | None = None, topic: str | None = None) -> None:
        super().__init__(message, topic=topic)
        self.estimate_bytes, self.limit_bytes = estimate_bytes, limit_bytes
        self.records, self.limit_records = records, limit_records


class UnknownSchemasError(WindowError):
    """No record of the window decoded and the registry knew none of its schema ids: the
    registry is most likely the wrong one. ``schema_ids`` lists the ids asked for."""

    def __init__(self, message: str = "", *, schema_ids: tuple[int, ...] = (),
                 topic: str | None = None, url: str | None = None) -> None:
        super().__init__(message, topic=topic, url=url,
                         schema_id=schema_ids[0] if schema_ids else None)
        self.schema_ids = schema_ids


class SnapshotError(TuAnalyticsError):
    """A snapshot could not be written or read."""


class SandboxError(TuAnalyticsError, RuntimeError):
    """The local sandbox could not be started, stopped or queried."""


__all__ = [
    "AuthenticationError",
    "AuthorizationError",
    "ConfigurationError",
    "ConnectionError",
    "RegistryError",
    "SandboxError",
    "SnapshotError",
    "TopicNotFoundError",
    "TuAnalyticsError",
    "UnknownSchemasError",
    "WindowError",
    "WindowTooLargeError",
]


def authentication_error(service: Literal["broker", "registry"], url: str, user: str | None,
                         detail: str, *, topic: str | None = None) -> AuthenticationError:
    """The one place an authentication failure is worded: which service, where, whose
    credentials (the user, never the password) and the service's own (scrubbed) reason."""
    what = "SASL credentials" if service == "broker" else "registry credentials"
    where = f" at {url}" if url else ""
    return AuthenticationError(
        f"the {'broker' if service == 'broker' else 'Schema Registry'}{where} rejected the "
        f"{what} of {user!r}: {detail}",
        topic=topic, url=url or None, user=user,
    )


class TuAnalyticsWarning(UserWarning):
    """Base of the warnings tu-analytics gives."""


class DecodeWarning(TuAnalyticsWarning):
    """Some records could not be decoded; they are in the window's ``errors`` frame."""


class SlowDecodeWarning(TuAnalyticsWarning):
    """A writer schema uses a construct no native reader takes; its records are decoded with
    fastavro (correct, but much slower). The message names the construct."""


class RetentionWarning(TuAnalyticsWarning):
    """The window starts before the oldest record the topic still retains."""


__all__ += ["DecodeWarning", "RetentionWarning", "SlowDecodeWarning", "TuAnalyticsWarning"]


# -- times, names and snapshots (added with issues 9/15) --------------------------------------


class NaiveTimeWarning(TuAnalyticsWarning):
    """A time without a UTC offset was read in this computer's local time zone.

    ``value`` is what was given, ``resolved`` the UTC instant it was read as, ``zone`` the
    local zone's name at that instant.
    """

    def __init__(self, value: object, resolved: object, zone: str) -> None:
        self.value, self.resolved, self.zone = value, resolved, zone
        super().__init__(
            f"{value!r} has no UTC offset: read in this computer's local time ({zone}) as "
            f"{resolved}. Add an offset ('Z', '+01:00') or pass an aware datetime to say "
            "which instant you mean"
        )


class UnknownMachineWarning(TuAnalyticsWarning):
    """Some ``machines=`` entries match no machine id or EquipmentID in the window.

    ``unknown`` lists them; ``close`` maps each to its closest known ids or names.
    """

    def __init__(self, unknown: tuple[str, ...], close: dict[str, list[str]]) -> None:
        self.unknown, self.close = unknown, close
        parts = []
        for name in unknown:
            near = close.get(name) or []
            hint = f" (did you mean {', '.join(repr(n) for n in near)}?)" if near else ""
            parts.append(f"{name!r}{hint}")
        super().__init__(
            "no machine in this window has the machine id or EquipmentID "
            + "; ".join(parts)
        )


class SnapshotIntegrityError(SnapshotError):
    """A snapshot's frame file does not match its manifest (truncated, swapped, altered).

    ``path`` is the file, ``check`` what differs (``"sha256"`` or ``"rows"``), with the
    manifest's ``expected`` value and the ``found`` one.
    """

    def __init__(self, path: object, check: str, expected: object, found: object) -> None:
        self.path, self.check, self.expected, self.found = path, check, expected, found
        super().__init__(
            f"snapshot file {path} fails its {check} check (manifest {expected}, file {found}): "
            "it was changed or damaged after the snapshot was written"
        )


__all__ += ["NaiveTimeWarning", "SnapshotIntegrityError", "UnknownMachineWarning"]


class ArchiveError(TuAnalyticsError):
    """A Delta Lake archive could not be opened, read or written (nothing half-written is
    visible to tu-analytics' readers). ``uri`` is the archive's URI."""

    def __init__(self, message: str, *, uri: str = "") -> None:
        super().__init__(message)
        self.uri = uri


class ArchiveConflictError(ArchiveError):
    """Another archiver committed to the same archive first; this one stopped without
    writing anything visible."""


class ArchiveSchemaError(ArchiveError):
    """A column's type changed incompatibly between the archive and a new writer schema."""


__all__ += ["ArchiveConflictError", "ArchiveError", "ArchiveSchemaError"]
class DisorderWarning(TuAnalyticsWarning):
    """A record's timestamp came within a fifth of ``lateness`` behind an earlier one in its
    partition: disorder that large may exceed ``lateness`` elsewhere, and records would then
    be missed. Raise ``lateness=`` (or ``TU_LATENESS``)."""


class CoverageWarning(TuAnalyticsWarning):
    """The window covers less than asked (its end lies in the future); ``spec.covered_end``
    says up to when it was read."""


__all__ += ["CoverageWarning", "DisorderWarning"]
