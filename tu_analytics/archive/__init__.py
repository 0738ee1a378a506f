"""An exactly-once Delta Lake archive of a Streaming API topic, and history past 14 days.

    conn.archive("data/archive", once=True)        # or: tu-analytics archive run URI --once
    tu.archive_status("data/archive")              # watermarks, lag, gaps, rows
    tu.scan_archive("data/archive", start=..., end=..., columns=[...])   # a LazyFrame
    conn.history(start, end, archive="data/archive")                     # archive + topic

Tables under the URI: ``main`` (``Window.main``'s columns + ``kafka_date`` + ``source``),
one per long frame, ``errors`` and ``gaps``. See ``_layout`` for the exactly-once rules.
"""

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._backfill import backfill
    from ._history import history
    from .reader import archive_status, scan_archive
    from .upkeep import compact
    from .writer import Archiver, RunResult, archive

# Loaded on first use, so registering the CLI (``archive.cli``) imports no Polars/deltalake.
_LAZY = {
    "backfill": "._backfill", "history": "._history", "archive_status": ".reader",
    "scan_archive": ".reader", "compact": ".upkeep", "Archiver": ".writer",
    "RunResult": ".writer", "archive": ".writer",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module 'tu_analytics.archive' has no attribute {name!r}")


__all__ = ["Archiver", "RunResult", "archive", "archive_status", "backfill", "compact",
           "history", "scan_archive"]
