"""Geometry on Polars expressions: geohash cells and great-circle distance (columnar).

Part of :mod:`tu_analytics.features.table` (the geohash functions are public there).
"""

from __future__ import annotations

import polars as pl

EARTH_RADIUS_M = 6_371_008.8
_GEOHASH_ALPHABET = "0123456789bcdefghjkmnpqrstuvwxyz"


def geohash_code(lat: pl.Expr, lon: pl.Expr, precision: int = 6) -> pl.Expr:
    """Geohash cell of (lat, lon) as an integer (5 bits per character), columnar.

    Equal integers mean equal geohash strings of length ``precision``; the loop runs over bits,
    not rows. Bits alternate longitude/latitude, longitude first, as in the geohash spec.
    """
    if not 1 <= precision <= 12:
        raise ValueError("precision must be 1..12")
    total = 5 * precision
    lon_bits = (total + 1) // 2
    lat_bits = total // 2
    lon_idx = ((lon + 180.0) * (2**lon_bits / 360.0)).floor().clip(0, 2**lon_bits - 1)
    lat_idx = ((lat + 90.0) * (2**lat_bits / 180.0)).floor().clip(0, 2**lat_bits - 1)
    lon_i = lon_idx.cast(pl.Int64)
    lat_i = lat_idx.cast(pl.Int64)
    code = pl.lit(0, dtype=pl.Int64)
    for pos in range(total):
        # pos 0 is the most significant bit; even positions take longitude bits.
        src, nbits, j = (lon_i, lon_bits, pos // 2) if pos % 2 == 0 else (lat_i, lat_bits, pos // 2)
        bit = (src // (2 ** (nbits - 1 - j))) % 2
        code = code + bit * (2 ** (total - 1 - pos))
    return code


def geohash_string(code: int, precision: int = 6) -> str:
    """Decode an integer from :func:`geohash_code` into the usual base-32 text."""
    return "".join(
        _GEOHASH_ALPHABET[(code >> (5 * (precision - 1 - i))) & 31] for i in range(precision)
    )


def haversine_m(lat1: pl.Expr, lon1: pl.Expr, lat2: pl.Expr, lon2: pl.Expr) -> pl.Expr:
    p1, p2 = lat1.radians(), lat2.radians()
    a = ((p2 - p1) / 2).sin() ** 2 + p1.cos() * p2.cos() * ((lon2 - lon1).radians() / 2).sin() ** 2
    return 2 * EARTH_RADIUS_M * a.clip(0.0, 1.0).sqrt().arcsin()
