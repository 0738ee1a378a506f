"""Stable randomness: every draw comes from a stream keyed by (seed, machine, day, purpose).

``hash()`` of strings changes between processes, so keys are blake2b digests; streams are
``random.Random`` seeded by splitmix64 of the key and the parts. Not for security.
"""

from __future__ import annotations

import functools
import hashlib
import random
import statistics
from collections.abc import Callable
from typing import Final

__all__ = ["P_DELIVERY", "P_MSG", "P_NIGHT", "P_PLAN", "P_RENT", "P_SPOT", "day_rng", "mix",
           "normal_draws", "stable_key", "uniform01"]

def stable_key(*parts: object) -> int:
    """A stable 64-bit key (``hash()`` of strings changes between processes)."""
    return int.from_bytes(hashlib.blake2b(repr(parts).encode(), digest_size=8).digest(), "big")


_M64: Final = (1 << 64) - 1


def mix(key: int, *parts: int) -> int:
    """splitmix64 over ``parts``: a cheap stable hash for one-off draws."""
    h = key
    for p in parts:
        h = (h + p * 0x9E3779B97F4A7C15 + 0x632BE59BD9B4E019) & _M64
        h = ((h ^ (h >> 30)) * 0xBF58476D1CE4E5B9) & _M64
        h = ((h ^ (h >> 27)) * 0x94D049BB133111EB) & _M64
        h ^= h >> 31
    return h


def uniform01(h: int) -> float:
    return (h >> 11) * (1.0 / (1 << 53))


def day_rng(key: int, *parts: int) -> random.Random:
    # Not for security: a reproducible stream per (machine, day, purpose).
    return random.Random(mix(key, *parts))  # noqa: S311


# Purposes of the per-day random streams.
P_PLAN, P_MSG, P_RENT, P_SPOT, P_NIGHT, P_DELIVERY = 1, 2, 3, 4, 5, 6


@functools.cache
def z_table() -> tuple[float, ...]:
    nd = statistics.NormalDist()
    n = 1 << 12
    return tuple(nd.inv_cdf((i + 0.5) / n) for i in range(n))


def normal_draws(rng: random.Random) -> Callable[[], float]:
    """Standard normal noise by table lookup (tails cut at ~3.5 sigma: fine for sensor noise)."""
    table = z_table()
    rnd = rng.random
    n = float(len(table))

    def z() -> float:
        return table[int(rnd() * n)]
    return z
