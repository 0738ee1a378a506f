"""The machine map's data: latest positions, states, filters and site rings (pure, no figure).

Part of :mod:`tu_analytics.widgets.map` (import from there). :func:`prepare_map` turns a Machine
Insights ``main`` frame into a :class:`MapData`; the figure code only draws what it holds.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import polars as pl

from tu_analytics.sites import assign_sites, position_label
from tu_analytics.utilisation import machine_state
from tu_analytics.widgets._data import (
    IDENTITY,
    last_values,
    machine_labels,
    numeric_insights,
    site_column,
    valid_positions,
)

STATES: tuple[str, ...] = ("operating", "idle", "off", "no recent data")
STATE_COLOURS: dict[str, str] = {
    "operating": "#2ca02c",
    "idle": "#ff9f1c",
    "off": "#5c6670",
    "no recent data": "#c7c7c7",
}
_HOURS = "CumulativeOperatingHours"
_FUEL = "FuelLevel"
_CUSTOM = (
    "label",
    "OEMName",
    "Model",
    "MachineId",
    "state",
    "hours_text",
    "fuel_text",
    "seen_text",
    "site_text",
    "value_text",
    "position_text",
)


_EMPTY_SITES = pl.DataFrame(
    schema={
        "site": pl.String,
        "lat": pl.Float64,
        "lon": pl.Float64,
        "machines": pl.Int64,
        "hover": pl.String,
        "radius": pl.Float64,
    }
)


@dataclass(frozen=True, slots=True)
class MapOptions:
    """What the map shows; the controls edit these. Empty filter tuples mean "all"."""

    color_by: str = "state"
    trails: bool = False
    sites: tuple[str, ...] = ()
    oems: tuple[str, ...] = ()
    models: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class MapData:
    """The prepared content of a map (pure data; see :func:`prepare_map`)."""

    options: MapOptions
    frame: pl.DataFrame
    """The frame the map was prepared from."""
    machines: pl.DataFrame
    """One row per machine on the map (after filters), with its latest valid position."""
    trails: pl.DataFrame
    """``MachineId, Latitude, Longitude`` of recent positions, oldest first per machine."""
    site_column: str | None = None
    choices: dict[str, list[str]] = field(default_factory=dict)
    """Values offered by the controls: ``sites``, ``oems``, ``models``, ``insights``."""
    without_position: int = 0
    """Machines in the frame that have no valid position (not drawn)."""
    sites: pl.DataFrame = field(default_factory=lambda: _EMPTY_SITES.clear())
    """One row per site with machines on the map: ``site, lat, lon, machines, hover``."""
    static: dict[str, Any] | None = field(default=None, compare=False, repr=False)
    """A static map's figure bundle, built by :meth:`MachineMap.prepare` (off the event loop:
    building and serialising the figure takes 0.1-0.9 s)."""


def _latest_positions(positions: pl.DataFrame) -> pl.DataFrame:
    keys: list[str] = [
        c for c in ("Location_datetime", "kafka_timestamp") if c in positions.columns
    ]
    ranked = positions.filter(pl.col("MachineId").is_not_null()).with_row_index("__row")
    return (
        ranked.sort([*keys, "__row"], nulls_last=False)
        .unique("MachineId", keep="last", maintain_order=True)
        .select(
            "MachineId",
            pl.col("Latitude").cast(pl.Float64),
            pl.col("Longitude").cast(pl.Float64),
            *keys[:1],
        )
    )


def _trails(positions: pl.DataFrame, machines: Iterable[str], points: int) -> pl.DataFrame:
    keys = [c for c in ("Location_datetime", "kafka_timestamp") if c in positions.columns]
    lat, lon = pl.col("Latitude").cast(pl.Float64), pl.col("Longitude").cast(pl.Float64)
    # A parked machine reports the same fix again and again: keep only the moves.
    moved = (lat != lat.shift(1).over("MachineId")) | (lon != lon.shift(1).over("MachineId"))
    return (
        positions.filter(pl.col("MachineId").is_in(list(machines)))
        .with_row_index("__row")
        .sort(["MachineId", *keys, "__row"], nulls_last=False)
        .filter(moved.fill_null(value=True))
        .group_by("MachineId", maintain_order=True)
        .tail(points)
        .select("MachineId", lat.alias("Latitude"), lon.alias("Longitude"))
    )


def _text(value: pl.Expr, digits: int, unit: str) -> pl.Expr:
    # Formatted in Polars (not per row in Python): hover text for every machine on each redraw.
    number = value.cast(pl.Float64, strict=False).round(digits)
    shown = number.cast(pl.Int64) if digits == 0 else number
    return pl.concat_str(shown.cast(pl.String), pl.lit(unit)).fill_null("–")


def _distinct(frame: pl.DataFrame, column: str | None) -> list[str]:
    if column is None or column not in frame.columns:
        return []
    values = frame.get_column(column).drop_nulls().cast(pl.String).unique()
    return sorted(v for v in values.to_list() if v)


def _empty(options: MapOptions, frame: pl.DataFrame) -> MapData:
    machines = pl.DataFrame(
        schema={
            "MachineId": pl.String,
            "Latitude": pl.Float64,
            "Longitude": pl.Float64,
            "state": pl.String,
            "value": pl.Float64,
            "shown_lat": pl.Float64,
            "shown_lon": pl.Float64,
            **dict.fromkeys(_CUSTOM[:3], pl.String),
            **dict.fromkeys(_CUSTOM[5:], pl.String),
        }
    )
    trails = pl.DataFrame(
        schema={"MachineId": pl.String, "Latitude": pl.Float64, "Longitude": pl.Float64}
    )
    return MapData(
        options,
        frame,
        machines,
        trails,
        choices={"sites": [], "oems": [], "models": [], "insights": []},
    )


def _shown_machines(
    latest: pl.DataFrame, selected: pl.DataFrame, site: str | None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The machines drawn (hover texts, display positions) and their site markers."""
    machines = latest.join(selected, on="MachineId", how="inner")
    numeric = "__value" in machines.columns and machines.schema["__value"].is_numeric()
    value = pl.col("__value").cast(pl.Float64) if numeric else pl.lit(None, pl.Float64)
    machines = machines.with_columns(
        pl.col("label").fill_null(pl.col("MachineId")),
        pl.col("state").fill_null("no recent data"),
        value.alias("value"),
    )
    machines = machines.with_columns(
        *(pl.col(c).cast(pl.String).fill_null("–") for c in ("OEMName", "Model")),
        _text(pl.col(_HOURS), 1, " h").alias("hours_text"),
        _text(pl.col(_FUEL), 0, " %").alias("fuel_text"),
        pl.col("last_seen").dt.to_string("%Y-%m-%d %H:%M:%S UTC").fill_null("–").alias("seen_text"),
        (pl.col(site).cast(pl.String) if site else pl.lit(None, pl.String))
        .fill_null("–")
        .alias("site_text"),
        _text(pl.col("value"), 2, "").alias("value_text"),
        pl.format("{}, {}", pl.col("Latitude").round(5), pl.col("Longitude").round(5)).alias(
            "position_text"
        ),
    ).sort("label")
    return _spread(machines)


def prepare_map(
    frame: pl.DataFrame | None,
    options: MapOptions = MapOptions(),
    *,
    now: datetime | None = None,
    stale_after: str | timedelta = "2h",
    trail_points: int = 20,
) -> MapData:
    """Everything a map draws, computed from a Machine Insights ``main`` frame (pure).

    Positions with null coordinates, or with latitude and longitude both 0 (an altitude-only
    fix), are never drawn. State comes from :func:`tu_analytics.utilisation.machine_state`.
    """
    frame = pl.DataFrame() if frame is None else frame
    if frame.is_empty() or "MachineId" not in frame.columns:
        return _empty(options, frame)
    site = site_column(frame)
    assigned = site is None or site == "City"
    if assigned:
        frame, site = assign_sites(frame), "site"
    state = machine_state(frame, now=now, stale_after=stale_after).select(
        "MachineId", "state", "last_seen"
    )
    known = _machine_info(frame, site, options).join(state, on="MachineId", how="left")
    # Only the columns positions need: sorting a window's hundreds of columns is the slow part.
    keep = ("MachineId", "Latitude", "Longitude", "Location_datetime", "kafka_timestamp")
    positions = valid_positions(frame.select(c for c in keep if c in frame.columns))
    latest = _latest_positions(positions)
    if assigned and site is not None:
        known = _named_by_neighbours(known, latest, site)
    choices = {
        "sites": _distinct(known, site),
        "oems": _distinct(known, "OEMName"),
        "models": _distinct(known, "Model"),
        "insights": numeric_insights(frame),
    }
    machines, sites = _shown_machines(latest, _selected(known, site, options), site)
    trails = (
        _trails(positions, machines.get_column("MachineId").to_list(), trail_points)
        if options.trails
        else _empty(options, frame).trails
    )
    return MapData(
        options=options,
        frame=frame,
        machines=machines,
        trails=trails,
        site_column=site,
        choices=choices,
        without_position=known.height - known.join(latest, on="MachineId", how="semi").height,
        sites=sites,
    )


#: Machines this close (degrees of latitude, ~2 km) to a machine of a named site share its name.
_NEAR_DEG = 0.02


def _named_by_neighbours(known: pl.DataFrame, latest: pl.DataFrame, site: str) -> pl.DataFrame:
    """A machine whose site is only its coordinates (:func:`~tu_analytics.sites.position_label`:
    no City known near it *by its rows' time*) takes the site of the nearest machine within
    ~2 km whose site has a name. The map shows the fleet's latest state, so a City reported
    anywhere in the frame may name it; one site is then one ring, not two overlapping ones."""
    placed = known.select("MachineId", site).join(
        latest.select("MachineId", "Latitude", "Longitude"), on="MachineId", how="inner"
    )
    if placed.is_empty():
        return known
    coords = pl.Series(
        [position_label(a, o) for a, o in placed.select("Latitude", "Longitude").iter_rows()],
        dtype=pl.String,
    )
    bare = placed.with_columns(coords.alias("__coords")).select(
        "MachineId", "Latitude", "Longitude", (pl.col(site) == pl.col("__coords")).alias("bare")
    )
    named = placed.join(bare.filter(pl.col("bare")), on="MachineId", how="anti").filter(
        pl.col(site).is_not_null()
    )
    near = (
        bare.filter(pl.col("bare"))
        .join(
            named.select(
                pl.col(site).alias("__name"),
                pl.col("Latitude").alias("__lat"),
                pl.col("Longitude").alias("__lon"),
            ),
            how="cross",
        )
        .with_columns(
            dy=pl.col("__lat") - pl.col("Latitude"),
            dx=(pl.col("__lon") - pl.col("Longitude")) * pl.col("Latitude").radians().cos(),
        )
        .filter((pl.col("dy").abs() <= _NEAR_DEG) & (pl.col("dx").abs() <= _NEAR_DEG))
        .sort(pl.col("dy") ** 2 + pl.col("dx") ** 2, "__name")
        .unique("MachineId", keep="first")
        .select("MachineId", "__name")
    )
    return (
        known.join(near, on="MachineId", how="left")
        .with_columns(pl.coalesce("__name", site).alias(site))
        .drop("__name")
    )


def _machine_info(frame: pl.DataFrame, site: str | None, options: MapOptions) -> pl.DataFrame:
    """Per machine: identity, hours, fuel, site, label, and the colouring insight (``__value``)."""
    wanted = [*IDENTITY[1:], _HOURS, _FUEL, *([site] if site else [])]
    info = last_values(frame, wanted).join(machine_labels(frame), on="MachineId", how="left")
    if options.color_by == "state":
        return info
    coloured = last_values(frame, [options.color_by]).select(
        "MachineId", pl.col(options.color_by).alias("__value")
    )
    return info.join(coloured, on="MachineId", how="left")


def _selected(known: pl.DataFrame, site: str | None, options: MapOptions) -> pl.DataFrame:
    """The machines that pass the site, OEM and model filters (an empty filter passes all)."""
    selected = known
    for column, values in (
        (site, options.sites),
        ("OEMName", options.oems),
        ("Model", options.models),
    ):
        if values and column is not None:
            selected = selected.filter(pl.col(column).cast(pl.String).is_in(list(values)))
    return selected


def _spread(machines: pl.DataFrame) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Display positions (``shown_lat``/``shown_lon``) and one marker per site.

    Machines of one site (same ``site_text``; else the same position to ~100 m) are put on a
    ring around the site's centre, so each stays visible and hoverable; hover keeps the exact
    position. The ring's radius is a fixed share of the fleet's extent, so it looks the same
    at the view the map opens with.
    """
    if machines.is_empty():
        return machines, _EMPTY_SITES.clear()
    key = (
        pl.when(pl.col("site_text") != "–")
        .then(pl.col("site_text"))
        .otherwise(pl.format("{} {}", pl.col("Latitude").round(3), pl.col("Longitude").round(3)))
    )
    m = machines.with_columns(key.alias("__site"))
    centres = m.group_by("__site", maintain_order=True).agg(
        pl.col("Latitude").mean().alias("lat"),
        pl.col("Longitude").mean().alias("lon"),
        pl.len().alias("machines"),
        *(pl.col("state").eq(s).sum().alias(s) for s in STATES),
    )
    spans = centres.select(
        (pl.col("lat").max() - pl.col("lat").min()).alias("lat"),
        (pl.col("lon").max() - pl.col("lon").min()).alias("lon"),
    ).row(0)
    lat_span, lon_span = float(spans[0]), float(spans[1])
    base = 0.025 * max(lat_span * 1.4, lon_span * 1.4, 4.0)
    # A bigger site gets a wider ring, so its machines do not touch each other or the marker.
    centres = centres.with_columns(
        (base * (pl.col("machines").cast(pl.Float64) / 6).clip(1.0, 4.0)).alias("radius")
    )
    m = m.join(
        centres.select("__site", "lat", "lon", "machines", "radius"), on="__site", how="left"
    )
    k = pl.int_range(pl.len()).over("__site").cast(pl.Float64)
    angle = 2 * math.pi * k / pl.col("machines").cast(pl.Float64)
    coslat = pl.col("lat").radians().cos().clip(0.2, 1.0)
    many = pl.col("machines") > 1
    m = m.with_columns(
        pl.when(many)
        .then(pl.col("lat") + pl.col("radius") * angle.sin())
        .otherwise(pl.col("Latitude"))
        .alias("shown_lat"),
        pl.when(many)
        .then(pl.col("lon") + pl.col("radius") * angle.cos() / coslat)
        .otherwise(pl.col("Longitude"))
        .alias("shown_lon"),
    ).drop("__site", "lat", "lon", "machines", "radius")
    return m, _site_markers(centres)


def _site_markers(centres: pl.DataFrame) -> pl.DataFrame:
    """One row per site: its centre, count, ring radius and hover text (states counted)."""
    counts = pl.concat_str(
        [pl.when(pl.col(s) > 0).then(pl.format("{} " + s, pl.col(s))) for s in STATES],
        separator=", ",
        ignore_nulls=True,
    )
    return centres.select(
        pl.col("__site").alias("site"),
        "lat",
        "lon",
        pl.col("machines").cast(pl.Int64),
        pl.format(
            "<b>{}</b><br>{} machines: {}", pl.col("__site"), pl.col("machines"), counts
        ).alias("hover"),
        "radius",
    )
