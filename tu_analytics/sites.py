"""Sites: a stable, human name for where each Machine Insights row's machine is.

Trackunit reports a machine's ``City`` (reverse geocoded by the platform) only in its
LocationAddress insight, so ``City`` is null in most rows. :func:`assign_sites` adds a ``site``
column that is set wherever the machine's place is known *as of that row*:

1. the row's own ``City``;
2. else the machine's latest ``City`` received before this row, so a row's site never depends
   on later data (feature tables read it at each row's cut-off);
3. else, when the machine has a position by then: a City that machines positioned within about
   1 km reported by this row's time (:func:`site_anchors`, per 0.01° cell and City the first time
   it was reported): in the row's own cell, else in each neighbouring cell in a fixed order,
   the City *first reported most recently* (ties: the larger name). A name reported again
   later does not displace one first reported after it, so the site does not flicker;
4. else the nearest Natural Earth populated place within :data:`PLACE_RADIUS_KM`, or else the
   position rounded to 0.1° (``"52.5°N 13.4°E"``).

"Before" is receipt order (``kafka_timestamp``), ties broken by the rows' content, never by
their position in the frame. Positions are carried forward per machine in that order. Only rows
with a ``MachineId`` and a ``kafka_timestamp`` report a City to other machines.

Rules 1, 2 and 4 read only the machine's own rows; rule 3 reads other machines only through the
small anchors table, so a frame split into machine groups gets exactly the whole frame's sites
when each group is given the whole input's anchors (``assign_sites(group, anchors=...)``; the
anchors of groups merge with :func:`merge_anchors`). This is how feature tables built group by
group, or on Spark, carry the same ``site``: they order readings by the bucket each is
available for (``known_at``) and ask :func:`sites_at` for each machine's site per bucket.

:func:`machine_zones` gives each machine's local IANA time zone from its position, for the
per-site local time of the utilisation views (``tz="site"``).

Pure and deterministic: the same rows give the same sites, whatever else the frame holds.
"""

from __future__ import annotations

import gzip
import json
from functools import cache
from importlib import resources
from typing import Any, overload

import numpy as np
import polars as pl

__all__ = [
    "ANCHOR_SCHEMA",
    "PLACE_RADIUS_KM",
    "assign_sites",
    "base_layer",
    "machine_zones",
    "merge_anchors",
    "nearest_place",
    "nearest_places",
    "places",
    "position_label",
    "site_anchors",
    "sites_at",
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


def _valid_position(names: list[str]) -> tuple[pl.Expr, pl.Expr]:
    """Latitude and longitude where the row has a drawable position, else null."""
    if "Latitude" not in names or "Longitude" not in names:
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

#: The schema of :func:`site_anchors`: per ~1 km cell and City, when it was first reported.
ANCHOR_SCHEMA = pl.Schema(
    {"cy": pl.Int64(), "cx": pl.Int64(), "City": pl.String(), "first": pl.Datetime("ms", "UTC")}
)


def _ranked(main: pl.DataFrame | pl.LazyFrame, known_at: str) -> pl.LazyFrame:
    """The few columns the rules need, one row per input row (``__row``), in the order that
    defines "before" (``__t``: when the row became known; then receipt; then the row's
    content, positions first, so the order never depends on how rows were grouped or
    shuffled), with the machine's position and City carried forward."""
    lf = main.lazy()
    names = lf.collect_schema().names()
    city = (
        pl.col("City").cast(pl.String).str.strip_chars().replace("", None)
        if "City" in names
        else pl.lit(None, pl.String)
    )
    lat, lon = _valid_position(names)

    def time(name: str) -> pl.Expr:
        ms = pl.Datetime("ms", "UTC")
        return pl.col(name).cast(ms) if name in names else pl.lit(None, ms)

    # Its own type: an Enum of UUIDs is far smaller than their strings.
    machine = pl.col("MachineId") if "MachineId" in names else pl.lit(None, pl.String)
    ranked = (
        lf.select(
            machine.alias("__m"),
            city.alias("__city"),
            lat.alias("__lat"),
            lon.alias("__lon"),
            time(known_at).alias("__t"),
            time("kafka_timestamp").alias("__k"),
        )
        .with_row_index("__row")
        .sort(*_ORDER, nulls_last=[False, False, True, True, True, False])
    )
    if "MachineId" not in names:
        return ranked
    return ranked.with_columns(
        pl.col("__lat", "__lon").forward_fill().over("__m"),
        pl.col("__city").forward_fill().over("__m").alias("__known"),
    )


_ORDER = ("__t", "__k", "__lat", "__lon", "__city", "__row")


def _cells(lat: str, lon: str) -> list[pl.Expr]:
    return [
        (pl.col(lat) * _CELL).floor().cast(pl.Int64).alias("cy"),
        (pl.col(lon) * _CELL).floor().cast(pl.Int64).alias("cx"),
    ]


@overload
def site_anchors(main: pl.DataFrame, *, known_at: str = ...) -> pl.DataFrame: ...
@overload
def site_anchors(main: pl.LazyFrame, *, known_at: str = ...) -> pl.LazyFrame: ...
def site_anchors(
    main: pl.DataFrame | pl.LazyFrame, *, known_at: str = "kafka_timestamp"
) -> pl.DataFrame | pl.LazyFrame:
    """The cross-machine knowledge of :func:`assign_sites`: per ~1 km cell (0.01°) and
    ``City``, the first receipt time at which a machine positioned in the cell reported it
    (:data:`ANCHOR_SCHEMA`; lazy for a LazyFrame).

    Rows count only with a ``MachineId`` and a ``known_at`` time. Tiny (cells x names), and
    mergeable: the anchors of machine groups, concatenated and passed through
    :func:`merge_anchors`, equal the anchors of the whole input.
    """
    names = main.lazy().collect_schema().names()
    if not {"MachineId", known_at, "City"} <= set(names):
        empty = pl.DataFrame(schema=ANCHOR_SCHEMA)
        return empty.lazy() if isinstance(main, pl.LazyFrame) else empty
    reported = (
        _ranked(main, known_at)
        .filter(pl.col("__m").is_not_null() & pl.col("__t").is_not_null())
        .drop_nulls(["__city", "__lat", "__lon"])
        .select(*_cells("__lat", "__lon"), pl.col("__city").alias("City"), "__t")
        .rename({"__t": "first"})
    )
    return merge_anchors(reported.collect() if isinstance(main, pl.DataFrame) else reported)


@overload
def merge_anchors(parts: pl.DataFrame) -> pl.DataFrame: ...
@overload
def merge_anchors(parts: pl.LazyFrame) -> pl.LazyFrame: ...
def merge_anchors(parts: pl.DataFrame | pl.LazyFrame) -> pl.DataFrame | pl.LazyFrame:
    """Anchors (or raw reports, same columns) of several machine groups, concatenated, as
    one anchors table."""
    merged = (
        parts.lazy()
        .select(ANCHOR_SCHEMA.names())
        .cast(ANCHOR_SCHEMA)
        .group_by("cy", "cx", "City")
        .agg(pl.col("first").min())
        .sort("cy", "cx", "first", "City")
    )
    return merged if isinstance(parts, pl.LazyFrame) else merged.collect()


def _neighbour_city(ranked: pl.DataFrame, anchors: pl.DataFrame) -> pl.Series:
    """Per row: of the Cities first reported in its ~1 km cell by the row's time, the one
    first reported last (ties: the larger name); else the same in each of the 8 neighbouring
    cells, in a fixed order; else null."""
    found = pl.Series("city", [None] * ranked.height, dtype=pl.String)
    if anchors.is_empty():
        return found
    # One name per cell and instant: the as-of join then has no ties to break.
    latest = (
        anchors.group_by("cy", "cx", "first")
        .agg(pl.col("City").max())
        .sort("first", "cy", "cx")
    )
    wanted = ranked.select("__row", "__t", *_cells("__lat", "__lon")).drop_nulls().sort("__t")
    for dy in (0, -1, 1):
        for dx in (0, -1, 1):
            shifted = latest.select(
                pl.col("first").alias("__t"), pl.col("cy") - dy, pl.col("cx") - dx, "City"
            )
            hit = wanted.join_asof(
                shifted, on="__t", by=["cy", "cx"], strategy="backward", check_sortedness=False
            )
            full = ranked.select("__row").join(
                hit.select("__row", "City"), on="__row", how="left", maintain_order="left"
            )["City"]
            found = found.fill_null(full)
    return found


def _anchors(
    frame: pl.DataFrame, anchors: pl.DataFrame | pl.LazyFrame | None, known_at: str
) -> pl.DataFrame:
    if anchors is None:
        return site_anchors(frame, known_at=known_at)
    return anchors.collect() if isinstance(anchors, pl.LazyFrame) else anchors


def _resolved(ranked: pl.DataFrame, anchors: pl.DataFrame) -> pl.DataFrame:
    """``ranked`` rows (from :func:`_ranked`) with their ``site``: rules 1-4."""
    ranked = ranked.with_columns(
        _neighbour_city(ranked, anchors).alias("__near"),
        _place_names(
            ranked.select(pl.col("__lat").alias("lat"), pl.col("__lon").alias("lon"))
        ).alias("__place"),
    )
    known = "__known" if "__known" in ranked.columns else "__city"
    return ranked.with_columns(pl.coalesce("__city", known, "__near", "__place").alias("site"))


def assign_sites(
    main: pl.DataFrame,
    *,
    anchors: pl.DataFrame | pl.LazyFrame | None = None,
    known_at: str = "kafka_timestamp",
) -> pl.DataFrame:
    """``main`` with a ``site`` column (String), by the rules in the module docstring.

    ``anchors`` (:func:`site_anchors`, same ``known_at``) carries what other machines
    reported; by default it is computed from ``main`` itself. Pass the anchors of a larger
    input when ``main`` is one machine group of it, to get exactly the sites the whole input
    gives those rows. ``known_at`` names the time column that orders rows (default: receipt).

    Rows keep their order; an existing ``site`` column is replaced. Rows without a
    ``MachineId`` get a site only from their own ``City`` or position.
    """
    frame = main.drop("site") if "site" in main.columns else main
    if frame.is_empty():
        return frame.with_columns(pl.lit(None, pl.String).alias("site"))
    ranked = _resolved(_ranked(frame, known_at).collect(), _anchors(frame, anchors, known_at))
    return frame.with_columns(ranked.sort("__row").get_column("site"))


def sites_at(
    main: pl.DataFrame,
    *,
    known_at: str,
    anchors: pl.DataFrame | pl.LazyFrame | None = None,
) -> pl.DataFrame:
    """``MachineId, <known_at>, site``: each machine's site at each distinct ``known_at``
    time of its rows, as of all rows known by then (the site :func:`assign_sites` gives the
    last of them). Feature tables use it with ``known_at`` the bucket a reading is available
    for; naming only those rows is much cheaper than naming every row."""
    schema = pl.Schema(
        {"MachineId": pl.String(), known_at: pl.Datetime("ms", "UTC"), "site": pl.String()}
    )
    if main.is_empty() or "MachineId" not in main.columns:
        return pl.DataFrame(schema=schema)
    ranked = _ranked(main, known_at).collect().filter(pl.col("__m").is_not_null())
    last = ranked.filter(pl.struct("__m", "__t").is_last_distinct())
    named = _resolved(last, _anchors(main, anchors, known_at))
    return named.select(
        pl.col("__m").alias("MachineId"), pl.col("__t").alias(known_at), "site"
    ).cast(schema)
