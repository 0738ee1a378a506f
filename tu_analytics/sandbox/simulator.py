"""The fleet simulator (kept importable here; the code lives in :mod:`tu_analytics.sandbox.sim`)."""

from __future__ import annotations

from tu_analytics.sandbox.sim import (
    DEFAULT_EPOCH,
    LATE_SHARE,
    MAX_DELAY_MS,
    SimConfig,
    SimFormat,
    SimRecord,
    Simulator,
    clock_offset,
    geohash,
    load_schemas,
)

__all__ = [
    "DEFAULT_EPOCH",
    "LATE_SHARE",
    "MAX_DELAY_MS",
    "SimConfig",
    "SimFormat",
    "SimRecord",
    "Simulator",
    "clock_offset",
    "geohash",
    "load_schemas",
]
