"""Sites: a stable, human name for where each Machine Insights row's machine is.

Trackunit reports a machine's ``City`` (reverse geocoded by the platform) only in its
LocationAddress insight, so ``City`` is null in most rows. :func:`assign_sites` adds a ``site``
column that is set wherever the machine's place is known *as of that row*:

1. the row's own ``City``;
2. else the machine's latest ``City`` received before this row (receipt order), so a row's site
   never depends on later data (feature tables read it at each row's cut-off);
3. else, when the machine has a position by then: the newest ``City`` that any machine reported
   within about 1 km of it before this row (machines at one site share its name);
4. else the nearest Natural Earth populated place within :data:`PLACE_RADIUS_KM`, or else the
   position rounded to 0.1° (``"52.5°N 13.4°E"``).

:func:`machine_zones` gives each machine's local IANA time zone from its position, for the
per-site local time of the utilisation views (``tz="site"``).

Pure and deterministic: the same rows give the same sites, whatever else the frame holds.
"""

from __future__ import annotations

import gzip
import json
from functools import cache
from importlib import resources
from typing import Any

import numpy as np
import polars as pl

__all__ = [
    "PLACE_RADIUS_KM",
    "assign_sites",
    "base_layer",
    "machine_zones",
    "nearest_place",
    "nearest_places",
    "places",
    "position_label",
    "zone_at",
    "zones",
]

#: A position farther than this from every shipped populated place is named by its coordinates.
PLACE_RADIUS_KM = 50.0
_EARTH_KM = 6371.0


@cache
def base_layer() -> dict[str, object]:
    """The shipped Natural Earth base layer (land, borders, populated places); read once."""
    raw = resources.files("tu_analytics.widgets").joinpath("base_layer.json.gz").read_bytes()
    data: dict[str, object] = json.loads(gzip.decompress(raw))
    return data


def places() -> pl.DataFrame:
    """Natural Earth populated places shipped with the package: ``name, lon, lat``."""
    rows = base_layer()["places"]
    assert isinstance(rows, list)
    return pl.DataFrame(rows, schema=["name", "lon", "lat"], orient="row")


def position_label(lat: float, lon: float) -> str:
    """A place name for a position far from every known place: the position to 0.1°."""
    ns, ew = ("N" if lat >= 0 else "S"), ("E" if lon >= 0 else "W")
    return f"{abs(lat):.1f}°{ns} {abs(lon):.1f}°{ew}"


def _nearest(table: pl.DataFrame, lats: Any, lons: Any) -> tuple[np.ndarray[Any, Any], Any]:
    """Index of the nearest ``table`` row (``lon``, ``lat`` columns) and its distance in km."""
    plat = np.radians(table.get_column("lat").to_numpy())[None, :]
    plon = np.radians(table.get_column("lon").to_numpy())[None, :]
    lat = np.radians(np.asarray(lats, dtype=float))[:, None]
    lon = np.radians(np.asarray(lons, dtype=float))[:, None]
    h = np.sin((plat - lat) / 2) ** 2 + np.cos(lat) * np.cos(plat) * np.sin((plon - lon) / 2) ** 2
    km = 2 * _EARTH_KM * np.arcsin(np.sqrt(np.clip(h, 0.0, 1.0)))
    best = km.argmin(axis=1)
    return best, km[np.arange(len(best)), best]


def zones() -> pl.DataFrame:
    """IANA time zones with their principal city's position: ``zone, lon, lat``."""
    rows = base_layer()["zones"]
    assert isinstance(rows, list)
    return pl.DataFrame(rows, schema=["zone", "lon", "lat"], orient="row")


def zone_at(lats: Any, lons: Any) -> list[str]:
    """The local time zone of each position: the zone of the nearest tz-database principal
    city. Right away from borders; near one, a neighbour's zone, which in Europe and most
    places keeps the same clock."""
    if len(lats) == 0:
        return []
    table = zones()
    best, _ = _nearest(table, lats, lons)
    names = table.get_column("zone").to_list()
    return [names[b] for b in best]


def machine_zones(main: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame:
    """``MachineId, tz``: each machine's local zone from its latest valid position (machines
    never seen with one are left out)."""
    frame = main.collect() if isinstance(main, pl.LazyFrame) else main
    needed = {"MachineId", "Latitude", "Longitude"}
    if frame.is_empty() or not needed <= set(frame.columns):
        return pl.DataFrame(schema={"MachineId": pl.String, "tz": pl.String})
    lat = pl.col("Latitude").cast(pl.Float64, strict=False)
    lon = pl.col("Longitude").cast(pl.Float64, strict=False)
    valid = lat.is_finite() & lon.is_finite() & lat.is_between(-90, 90) & ~((lat == 0) & (lon == 0))
    last = (
        frame.filter(pl.col("MachineId").is_not_null() & valid)
        .group_by("MachineId", maintain_order=True)
        .agg(lat.last().alias("lat"), lon.last().alias("lon"))
    )
    tz = zone_at(last.get_column("lat").to_numpy(), last.get_column("lon").to_numpy())
    return last.select("MachineId", pl.Series("tz", tz, dtype=pl.String))


def nearest_place(lat: float, lon: float, *, radius_km: float = PLACE_RADIUS_KM) -> str:
    """The nearest shipped populated place within ``radius_km``, else :func:`position_label`."""
    return nearest_places(np.array([lat]), np.array([lon]), radius_km=radius_km)[0]


def nearest_places(
    lats: np.ndarray[Any, Any], lons: np.ndarray[Any, Any], *, radius_km: float = PLACE_RADIUS_KM
) -> list[str]:
    """:func:`nearest_place` for many positions at once (vectorised haversine)."""
    table = places()
    best, km = _nearest(table, lats, lons)
    names = table.get_column("name").to_list()
    return [
        names[b] if d <= radius_km else position_label(float(a), float(o))
        for b, d, a, o in zip(best, km, lats, lons, strict=True)
    ]


def _valid_position(frame: pl.DataFrame) -> tuple[pl.Expr, pl.Expr]:
    """Latitude and longitude where the row has a drawable position, else null."""
    if "Latitude" not in frame.columns or "Longitude" not in frame.columns:
        return pl.lit(None, pl.Float64), pl.lit(None, pl.Float64)
    lat = pl.col("Latitude").cast(pl.Float64, strict=False)
    lon = pl.col("Longitude").cast(pl.Float64, strict=False)
    valid = (
        lat.is_finite() & lon.is_finite() & lat.is_between(-90, 90) & lon.is_between(-180, 180)
    ) & ~((lat == 0) & (lon == 0))
    return pl.when(valid).then(lat), pl.when(valid).then(lon)


def _place_names(positions: pl.DataFrame) -> pl.Series:
    """The place name (:func:`nearest_places`) of each ``lat, lon`` row; null for null."""
    keyed = positions.select(pl.col("lat").round(4), pl.col("lon").round(4))
    # Many rows share a fix: name each distinct position once.
    distinct = keyed.drop_nulls().unique()
    names = (
        nearest_places(distinct.get_column("lat").to_numpy(), distinct.get_column("lon").to_numpy())
        if distinct.height
        else []
    )
    lookup = distinct.with_columns(pl.Series("name", names, dtype=pl.String))
    return keyed.join(lookup, on=["lat", "lon"], how="left", maintain_order="left")["name"]


_CELL = 100  # per degree: neighbouring cells of 0.01° (~1 km) share a site's City


def _neighbour_city(ranked: pl.DataFrame) -> pl.Series:
    """Per row: the newest City already reported by any machine within ~1 km of the row's
    known position (3×3 cells of 0.01°), as known at the row; else null."""
    cells = ranked.select(
        "__row",
        "__t",
        (pl.col("__lat") * _CELL).floor().cast(pl.Int64).alias("cy"),
        (pl.col("__lon") * _CELL).floor().cast(pl.Int64).alias("cx"),
        "__city",
    )
    anchors = cells.drop_nulls(["cy", "cx", "__city"]).sort("__t")
    found = pl.Series("city", [None] * ranked.height, dtype=pl.String)
    if anchors.is_empty():
        return found
    wanted = cells.drop_nulls(["cy", "cx"]).sort("__t")
    for dy in (0, -1, 1):
        for dx in (0, -1, 1):
            shifted = anchors.with_columns(pl.col("cy") - dy, pl.col("cx") - dx)
            hit = wanted.join_asof(
                shifted.select("__t", "cy", "cx", pl.col("__city").alias("city")),
                on="__t",
                by=["cy", "cx"],
                strategy="backward",
                check_sortedness=False,
            ).sort("__row")
            full = ranked.select("__row").join(
                hit.select("__row", "city"), on="__row", how="left", maintain_order="left"
            )["city"]
            found = found.fill_null(full)
    return found


def assign_sites(main: pl.DataFrame) -> pl.DataFrame:
    """``main`` with a ``site`` column (String), by the rules in the module docstring.

    Rows keep their order; an existing ``site`` column is replaced. Rows without a
    ``MachineId`` get a site only from their own ``City`` or position.
    """
    frame = main.drop("site") if "site" in main.columns else main
    if frame.is_empty():
        return frame.with_columns(pl.lit(None, pl.String).alias("site"))
    city = (
        pl.col("City").cast(pl.String).str.strip_chars().replace("", None)
        if "City" in frame.columns
        else pl.lit(None, pl.String)
    )
    lat, lon = _valid_position(frame)
    when = (
        pl.col("kafka_timestamp").cast(pl.Datetime("ms", "UTC"))
        if "kafka_timestamp" in frame.columns
        else pl.lit(None, pl.Datetime("ms", "UTC"))
    )
    group = "MachineId" if "MachineId" in frame.columns else None

    def known(expr: pl.Expr) -> pl.Expr:
        return expr.forward_fill().over(group) if group else expr

    # Work on the few columns needed (a window has hundreds), then attach the result.
    ranked = (
        frame.select(
            *(
                c
                for c in ("MachineId", "kafka_timestamp", "City", "Latitude", "Longitude")
                if c in frame.columns
            )
        )
        .with_row_index("__row")
        .with_columns(
            city.alias("__city"), lat.alias("__lat"), lon.alias("__lon"), when.alias("__t")
        )
        .sort("__t", "__row", nulls_last=False)
        .with_columns(known(pl.col("__lat")), known(pl.col("__lon")))
    )
    ranked = ranked.with_columns(
        _neighbour_city(ranked).alias("__near"),
        _place_names(
            ranked.select(pl.col("__lat").alias("lat"), pl.col("__lon").alias("lon"))
        ).alias("__place"),
    ).with_columns(
        pl.coalesce("__city", known(pl.col("__city")), "__near", "__place").alias("site")
    )
    return frame.with_columns(ranked.sort("__row").get_column("site"))
