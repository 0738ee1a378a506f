"""The fleet simulator (kept importable here; the code lives in :mod:`tu_analytics.sandbox.sim`)."""

from __future__ import annotations

from tu_analytics.sandbox.sim import *  # noqa: F403  (the same names: one definition)
from tu_analytics.sandbox.sim import __all__ as __all__
