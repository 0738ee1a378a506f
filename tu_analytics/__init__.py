"""tu-analytics: the Trackunit Streaming API as a first-class data source in Jupyter.

    import tu_analytics as tu
    conn = tu.connect()                  # TU_* environment, a profile, or keyword arguments
    win = conn.window(last="2h")         # every record received in the last two hours
    win.main, win.fault_codes, win.errors
    win.save("snap/"); tu.load_snapshot("snap/")

Nothing here touches the network at import or when connecting; only ``window()`` and
``tail()`` do.
"""

from typing import TYPE_CHECKING, Any

from .errors import (
    AuthenticationError,
    AuthorizationError,
    ConfigurationError,
    ConnectionError,
    CoverageWarning,
    DecodeWarning,
    DisorderWarning,
    NaiveTimeWarning,
    RegistryError,
    RetentionWarning,
    SandboxError,
    SnapshotError,
    SnapshotIntegrityError,
    TopicNotFoundError,
    TuAnalyticsError,
    TuAnalyticsWarning,
    UnknownMachineWarning,
    UnknownSchemasError,
    WindowError,
    WindowTooLargeError,
)

if TYPE_CHECKING:
    from ._connection import Connection, connect
    from ._settings import Secret, Settings
    from .archive import archive_status, scan_archive
    from .window import Window, WindowSpec, load_snapshot

# Loaded on first use, so `tu-analytics sandbox ...` and `import tu_analytics.errors` stay
# light (no Polars, no Kafka client) and importing the package does nothing else.
_LAZY = {
    "Connection": "._connection",
    "connect": "._connection",
    "Secret": "._settings",
    "Settings": "._settings",
    "Window": ".window",
    "WindowSpec": ".window",
    "load_snapshot": ".window",
    "scan_archive": ".archive",
    "archive_status": ".archive",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'tu_analytics' has no attribute {name!r}")


__version__ = "0.1.0"

__all__ = [
    "AuthenticationError",
    "AuthorizationError",
    "ConfigurationError",
    "Connection",
    "ConnectionError",
    "CoverageWarning",
    "DecodeWarning",
    "DisorderWarning",
    "NaiveTimeWarning",
    "RegistryError",
    "RetentionWarning",
    "SandboxError",
    "Secret",
    "Settings",
    "SnapshotError",
    "SnapshotIntegrityError",
    "TopicNotFoundError",
    "TuAnalyticsError",
    "TuAnalyticsWarning",
    "UnknownMachineWarning",
    "UnknownSchemasError",
    "Window",
    "WindowError",
    "WindowSpec",
    "WindowTooLargeError",
    "__version__",
    "archive_status",
    "connect",
    "load_snapshot",
    "scan_archive",
]
