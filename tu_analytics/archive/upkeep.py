"""Upkeep: ``compact`` (delta optimize + vacuum) and a retention policy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from ..errors import ArchiveError
from . import _layout as L
from ._store import Store

#: Vacuum never removes files younger than this: a reader or writer may still use them.
MIN_RETENTION_HOURS = 1.0


def compact(uri: str, *, retention_hours: float = 168.0, keep_days: float | None = None,
            storage_options: dict[str, str] | None = None) -> list[str]:
    """Optimize every table (bin-packing within ``kafka_date`` partitions), optionally delete
    rows received more than ``keep_days`` ago, then vacuum files unreferenced for
    ``retention_hours``. Watermarks are untouched (app transactions never expire here)."""
    if retention_hours < MIN_RETENTION_HOURS:
        raise ArchiveError(f"--retention-hours must be at least {MIN_RETENTION_HOURS}: "
                           "younger files may still be read by a running query", uri=uri)
    store = Store.open(uri, storage_options=storage_options)
    lines = []
    for name in [L.MAIN, *store.tables]:
        dt = store.load(name)
        if keep_days is not None and name != L.GAPS:
            cut = (datetime.now(UTC) - timedelta(days=keep_days)).date().isoformat()
            dt.delete(f"{L.DATE_COL} < '{cut}'")
        got = dt.optimize.compact()
        removed = dt.vacuum(retention_hours=int(retention_hours), dry_run=False,
                            enforce_retention_duration=False)
        lines.append(f"{name}: {got.get('numFilesRemoved', 0)} files compacted into "
                     f"{got.get('numFilesAdded', 0)}, {len(removed)} old files vacuumed")
    return lines
