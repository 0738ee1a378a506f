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
    │   └── WindowTooLargeError              a max-records / max-bytes guard tripped
    ├── SnapshotError                        a snapshot could not be written or read
    ├── ArchiveError                         a Delta archive could not be opened/read/written
    │   ├── ArchiveConflictError             another archiver committed first
    │   └── ArchiveSchemaError               a column's type changed incompatibly
    └── SandboxError (RuntimeError)          the local sandbox could not start/stop

Messages never contain secrets: callers pass masked settings into them, and driver errors
are wrapped with ``raise ... from`` after their text has been scrubbed.
"""

from __future__ import annotations

import builtins


class TuAnalyticsError(Exception):
    """Base of every error tu-analytics raises on purpose."""


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
    """A window would exceed its ``max_records`` or ``max_bytes`` guard."""


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
    "WindowError",
    "WindowTooLargeError",
]


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
