"""Positions: geohash, great-circle distance, bearing, and metre offsets."""

from __future__ import annotations

import math
import uuid
from typing import Final

from tu_analytics.sandbox.fleet import Site

__all__ = ["bearing", "geohash", "haversine_km", "offset_m", "stable_uuid"]

_GEOHASH_ALPHABET: Final = "0123456789bcdefghjkmnpqrstuvwxyz"


def _spread(v: int) -> int:
    """Spread the low 32 bits of v to the even bit positions of a 64-bit integer."""
    v &= 0xFFFFFFFF
    v = (v | (v << 16)) & 0x0000FFFF0000FFFF
    v = (v | (v << 8)) & 0x00FF00FF00FF00FF
    v = (v | (v << 4)) & 0x0F0F0F0F0F0F0F0F
    v = (v | (v << 2)) & 0x3333333333333333
    return (v | (v << 1)) & 0x5555555555555555


def geohash(lat: float, lon: float, precision: int = 12) -> str:
    """Standard base-32 geohash (longitude bit first), up to 12 characters."""
    if not 1 <= precision <= 12:
        raise ValueError("precision must be 1..12")
    lat_i = min(int((lat + 90.0) / 180.0 * (1 << 30)), (1 << 30) - 1)
    lon_i = min(int((lon + 180.0) / 360.0 * (1 << 30)), (1 << 30) - 1)
    bits = (_spread(lon_i) << 1) | _spread(lat_i)  # 60 bits, lon first at every pair
    return "".join(
        _GEOHASH_ALPHABET[(bits >> (55 - 5 * k)) & 31] for k in range(precision)
    )



def haversine_km(a: Site, b: Site) -> float:
    p1, p2 = math.radians(a.lat), math.radians(b.lat)
    dp, dl = p2 - p1, math.radians(b.lon - a.lon)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * 6371.0 * math.asin(math.sqrt(h))


def bearing(lat1: float, lon1: float, lat2: float, lon2: float) -> int:
    p1, p2, dl = math.radians(lat1), math.radians(lat2), math.radians(lon2 - lon1)
    x = math.sin(dl) * math.cos(p2)
    y = math.cos(p1) * math.sin(p2) - math.sin(p1) * math.cos(p2) * math.cos(dl)
    return int(math.degrees(math.atan2(x, y))) % 360



def offset_m(lat: float, lon: float, north_m: float, east_m: float) -> tuple[float, float]:
    return (lat + north_m / 111_320.0,
            lon + east_m / (111_320.0 * math.cos(math.radians(lat))))


_ID_NAMESPACE: Final = uuid.UUID("0c4f1b9e-2d7a-5e83-9a61-7f3b2c8d4e15")


def stable_uuid(*parts: object) -> str:
    """A deterministic UUID (v5) for ids the simulator invents (operators, keys)."""
    return str(uuid.uuid5(_ID_NAMESPACE, repr(parts)))
