"""The machine map: latest position per machine, coloured by state or by an insight.

One ``go.FigureWidget`` with a fixed set of ``Scattermap`` (MapLibre) traces is created once;
every update assigns new arrays to those traces inside ``batch_update()``, so a redraw is one
message and the figure is never re-created. :func:`map_figure` builds the same picture as a
static ``go.Figure`` (reports, nbviewer, GitHub).

The default style ``"base"`` draws on the shipped Natural Earth base layer (land, coastlines,
borders, city labels) on plain axes: it needs no network, no WebGL and no tiles. A tile style
(``"carto-positron"``, ``"open-street-map"``, ...) draws the same base layer on a MapLibre map
and says on the map that its tiles need the internet. Machines at one site are spread on a small
ring around a marker that shows how many they are; hover shows each one's exact position.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

import ipywidgets
import numpy as np
import plotly.graph_objects as go
import polars as pl

from tu_analytics.sites import assign_sites
from tu_analytics.utilisation import machine_state
from tu_analytics.widgets._basemap import (
    WATER,
    WORLD,
    Bounds,
    layer_arrays,
    project,
    tile_layers,
    tile_style,
    trace_styles,
)
from tu_analytics.widgets._data import (
    FILE_WORKER_JS,
    IDENTITY,
    fit_view,
    last_values,
    machine_labels,
    numeric_insights,
    site_column,
    static_bundle,
    valid_positions,
    view_bundle,
)
from tu_analytics.widgets._errors import ErrorBox
from tu_analytics.widgets.status import LiveStatus

__all__ = [
    "STATES",
    "STATE_COLOURS",
    "MachineMap",
    "MapData",
    "MapOptions",
    "is_tile_style",
    "map_figure",
    "positions_figure",
    "prepare_map",
]

STATES: tuple[str, ...] = ("operating", "idle", "off", "no recent data")
STATE_COLOURS: dict[str, str] = {
    "operating": "#2ca02c",
    "idle": "#ff9f1c",
    "off": "#5c6670",
    "no recent data": "#c7c7c7",
}
_HOURS = "CumulativeOperatingHours"
_FUEL = "FuelLevel"
# Trace order is fixed for the life of a figure: the base layer (land, borders, city labels),
# trails, one trace per state, the continuous colouring and the machines that have no value for
# it, and the site markers with their counts.
_OFFLINE_STYLES = frozenset({"base", "white-bg"})
_LAND = 0
_TRAILS = 3
_STATE0 = 4
# Later traces draw on top: machines at one site overlap, and a working machine should not
# hide under an idle one. The legend keeps the STATES order through legendrank.
_DRAW_ORDER: tuple[str, ...] = tuple(reversed(STATES))
_VALUE = _STATE0 + len(STATES)
_NO_VALUE = _VALUE + 1
_SITES = _NO_VALUE + 1
_HOVER = (
    "<b>%{customdata[0]}</b><br>"
    "%{customdata[1]} %{customdata[2]}<br>"
    "MachineId: %{customdata[3]}<br>"
    "state: %{customdata[4]}<br>"
    "operating hours: %{customdata[5]}<br>"
    "fuel level: %{customdata[6]}<br>"
    "last seen: %{customdata[7]}<br>"
    "site: %{customdata[8]}<br>"
    "position: %{customdata[10]}"
)
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
    if site is None or site == "City":
        frame, site = assign_sites(frame), "site"
    value_col = options.color_by if options.color_by != "state" else None
    wanted = [*IDENTITY[1:], _HOURS, _FUEL, *([site] if site else [])]
    info = last_values(frame, wanted).join(machine_labels(frame), on="MachineId", how="left")
    if value_col is not None:
        coloured = last_values(frame, [value_col]).select(
            "MachineId", pl.col(value_col).alias("__value")
        )
        info = info.join(coloured, on="MachineId", how="left")
    state = machine_state(frame, now=now, stale_after=stale_after).select(
        "MachineId", "state", "last_seen"
    )
    # Only the columns positions need: sorting a window's hundreds of columns is the slow part.
    keep = ("MachineId", "Latitude", "Longitude", "Location_datetime", "kafka_timestamp")
    positions = valid_positions(frame.select(c for c in keep if c in frame.columns))
    latest = _latest_positions(positions)
    known = info.join(state, on="MachineId", how="left")

    choices = {
        "sites": _distinct(known, site),
        "oems": _distinct(known, "OEMName"),
        "models": _distinct(known, "Model"),
        "insights": numeric_insights(frame),
    }
    selected = known
    for column, values in (
        (site, options.sites),
        ("OEMName", options.oems),
        ("Model", options.models),
    ):
        if values and column is not None:
            selected = selected.filter(pl.col(column).cast(pl.String).is_in(list(values)))

    machines, sites = _shown_machines(latest, selected, site)

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


def is_tile_style(map_style: str | dict[str, Any]) -> bool:
    """Whether ``map_style`` needs MapLibre (and tiles); ``"base"``/``"white-bg"`` do not."""
    return not (isinstance(map_style, str) and map_style in _OFFLINE_STYLES)


def _trace(tiles: bool, **kw: Any) -> go.Scatter | go.Scattermap:
    if tiles:
        kw.pop("connectgaps", None)
        return go.Scattermap(**kw)
    return go.Scatter(**kw)


def _overlay_traces(tiles: bool) -> list[go.Scatter | go.Scattermap]:
    """The continuous colouring, the machines without a value for it, and the site markers."""
    return [
        _trace(
            tiles,
            name="value",
            mode="markers",
            showlegend=False,
            visible=False,
            marker={
                "size": 11,
                "colorscale": "Viridis",
                "showscale": True,
                "colorbar": {"thickness": 14},
            },
            hovertemplate=_HOVER + "<br>%{meta}: %{customdata[9]}<extra></extra>",
        ),
        _trace(
            tiles,
            name="no value",
            mode="markers",
            visible=False,
            marker={"size": 9, "color": "#c7c7c7"},
            hovertemplate=_HOVER + "<extra></extra>",
        ),
        _trace(
            tiles,
            name="site: number of machines",
            mode="markers+text",
            legendrank=2000,
            marker={
                "size": 24,
                "color": "rgba(255,255,255,0.85)",
                **({} if tiles else {"line": {"color": "#334", "width": 1.5}}),
            },
            textfont={"size": 12, "color": "#223"},
            hovertemplate="%{customdata}<extra></extra>",
        ),
    ]


def _base_figure(map_style: str | dict[str, Any], height: int) -> go.Figure:
    tiles = is_tile_style(map_style)
    styles = trace_styles()
    traces = [_trace(tiles, **styles[name]) for name in ("land", "borders", "places")]
    traces.append(
        _trace(
            tiles,
            name="trails",
            mode="lines",
            hoverinfo="skip",
            showlegend=False,
            line={"width": 2, "color": "rgba(60,90,140,0.45)"},
            connectgaps=False,
        )
    )
    traces += [
        _trace(
            tiles,
            name=state,
            mode="markers",
            legendgroup="state",
            legendrank=1000 + STATES.index(state),
            marker={"size": 11, "color": STATE_COLOURS[state]},
            hovertemplate=_HOVER + "<extra></extra>",
        )
        for state in _DRAW_ORDER
    ]
    traces += _overlay_traces(tiles)
    fig = go.Figure(data=traces)
    fig.update_layout(
        height=height,
        margin={"l": 0, "r": 0, "t": 30, "b": 0},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "x": 0},
        # Always a legend, even when every machine shares one state (plotly hides it then).
        showlegend=True,
        uirevision="keep",
    )
    if tiles:
        fig.update_layout(
            map={
                "style": tile_style(map_style),
                "center": {"lat": 20, "lon": 0},
                "zoom": 1,
                "uirevision": "keep",
                "layers": tile_layers(map_style),
            },
            annotations=[_tile_notice(map_style)],
        )
    else:
        axis = {"visible": False, "showgrid": False, "zeroline": False}
        fig.update_layout(
            plot_bgcolor=WATER,
            # The plot area shrinks to the ranges' shape, so the whole fleet is always in view.
            xaxis={**axis, "constrain": "domain"},
            yaxis={**axis, "scaleanchor": "x", "scaleratio": 1, "constrain": "domain"},
            dragmode="pan",
        )
    return fig


def _tile_notice(map_style: str | dict[str, Any]) -> dict[str, Any]:
    name = map_style if isinstance(map_style, str) else "custom style"
    return {
        "text": f"Map tiles ({name}) load from the internet; where they cannot, you see the"
        " shipped Natural Earth base layer (use map_style='base' offline).",
        "xref": "paper",
        "yref": "paper",
        "x": 0.01,
        "y": 0.01,
        "xanchor": "left",
        "yanchor": "bottom",
        "showarrow": False,
        "font": {"size": 11, "color": "#333"},
        "bgcolor": "rgba(255,255,255,0.8)",
    }


def _coords(fig: Any, lats: Any, lons: Any) -> dict[str, Any]:
    if isinstance(fig.data[0], go.Scattermap):
        return {"lat": lats, "lon": lons}
    ys = [
        None if v is None else float(y)
        for v, y in zip(lats, project([np.nan if v is None else v for v in lats]), strict=True)
    ]
    return {"x": lons, "y": ys}


def _custom(frame: pl.DataFrame) -> np.ndarray[Any, Any]:
    if frame.is_empty():
        return np.empty((0, len(_CUSTOM)), dtype=object)
    return frame.select(list(_CUSTOM)).to_numpy().astype(object)


def _points(fig: Any, frame: pl.DataFrame) -> dict[str, Any]:
    return {
        **_coords(
            fig, frame.get_column("shown_lat").to_list(), frame.get_column("shown_lon").to_list()
        ),
        "customdata": _custom(frame),
    }


def _trail_arrays(trails: pl.DataFrame) -> tuple[list[float | None], list[float | None]]:
    lats: list[float | None] = []
    lons: list[float | None] = []
    for (_,), group in trails.group_by("MachineId", maintain_order=True):
        if group.height < 2:
            continue
        lats += [*group.get_column("Latitude").to_list(), None]
        lons += [*group.get_column("Longitude").to_list(), None]
    return lats, lons


def _view(data: MapData, aspect: float = 1.5) -> Bounds:
    m = data.machines
    if m.is_empty():
        return WORLD
    lats, lons = m.get_column("Latitude"), m.get_column("Longitude")
    box = Bounds(float(lons.min()), float(lons.max()), float(lats.min()), float(lats.max()))  # type: ignore[arg-type]
    # At least ~4° across, so a one-site fleet still shows its surroundings.
    cx, cy = (box.lon0 + box.lon1) / 2, (box.lat0 + box.lat1) / 2
    half_x, half_y = max((box.lon1 - box.lon0) / 2, 2.0), max((box.lat1 - box.lat0) / 2, 1.2)
    # Room for the rings around the sites and the site names under them.
    r = float(data.sites.get_column("radius").max() or 0.0)  # type: ignore[arg-type]
    view = Bounds(
        cx - half_x - 2 * r, cx + half_x + 2 * r, cy - half_y - 3 * r, cy + half_y + 2 * r
    ).grown(0.2)
    return _widened(view, aspect)


def _widened(view: Bounds, aspect: float) -> Bounds:
    """``view`` grown east and west until its projected width/height is at least ``aspect``, so
    a fleet spread north-south still fills a wide plot (the plot shrinks to the view's shape)."""
    y0, y1 = (float(v) for v in project([view.lat0, view.lat1]))
    want = aspect * (y1 - y0)
    if view.lon1 - view.lon0 >= want:
        return view
    pad = (want - (view.lon1 - view.lon0)) / 2
    return Bounds(max(view.lon0 - pad, -180.0), min(view.lon1 + pad, 180.0), view.lat0, view.lat1)


def _apply_base(fig: Any, view: Bounds, sites: pl.DataFrame) -> None:
    arrays = layer_arrays(view.grown(1.0))
    tiles = isinstance(fig.data[0], go.Scattermap)
    for i, name in enumerate(("land", "borders")):
        # A tile style carries land and borders in its own (inline) style.
        lons, lats, _ = ([], [], []) if tiles else arrays[name]
        fig.data[_LAND + i].update(**_coords(fig, lats, lons))
    lons, lats, texts = _labels(arrays["places"], sites)
    cities = len(texts) - sites.height  # site names come last: text only, a little larger
    fig.data[_LAND + 2].update(
        **_coords(fig, lats, lons),
        text=texts,
        marker={"size": [4] * cities + [0] * sites.height},
        textposition="top center"
        if tiles
        else ["top center"] * cities + ["middle center"] * sites.height,
        textfont={"size": 11, "color": "#555"}
        if tiles
        else {
            "size": [11] * cities + [12] * sites.height,
            "color": ["#555"] * cities + ["#223"] * sites.height,
        },
    )


def _labels(
    places: tuple[list[Any], list[Any], list[str]], sites: pl.DataFrame
) -> tuple[list[float], list[float], list[str]]:
    """City labels, then each site's name under its ring; a city label that a site's ring
    would cover is left out (the site's name says where it is)."""
    out: tuple[list[Any], list[Any], list[Any]] = ([], [], [])
    rings = list(sites.select("lat", "lon", "radius", "site").iter_rows())
    for lon, lat, text in zip(*places, strict=True):
        if all(abs(lat - a) > 2.5 * r or abs(lon - o) > 4 * r for a, o, r, _ in rings):
            for column, value in zip(out, (lon, lat, text), strict=True):
                column.append(value)
    for lat, lon, r, name in rings:
        for column, value in zip(out, (lon, lat - 1.6 * r, name), strict=True):
            column.append(value)
    return out


def _fit(fig: Any, view: Bounds, width: int) -> None:
    if isinstance(fig.data[0], go.Scattermap):
        centre, zoom = fit_view(
            [view.lat0, view.lat1],
            [view.lon0, view.lon1],
            width=width,
            height=int(fig.layout.height or 600),
        )
        fig.layout.map.center = centre
        fig.layout.map.zoom = zoom
        return
    y0, y1 = project([view.lat0, view.lat1])
    fig.layout.xaxis.range = [view.lon0, view.lon1]
    fig.layout.yaxis.range = [float(y0), float(y1)]


def _apply(fig: Any, data: MapData, *, fit: bool, width: int = 900) -> None:
    """Write ``data`` into the fixed traces of ``fig`` (a Figure or a FigureWidget)."""
    m = data.machines
    by_state = data.options.color_by == "state"
    with fig.batch_update():
        lats, lons = _trail_arrays(data.trails)
        fig.data[_TRAILS].update(**_coords(fig, lats, lons), visible=data.options.trails)
        for i, state in enumerate(_DRAW_ORDER):
            subset = m.filter(pl.col("state") == state) if by_state else m.clear()
            fig.data[_STATE0 + i].update(
                visible=by_state, name=f"{state} ({subset.height})", **_points(fig, subset)
            )
        valued = m.filter(pl.col("value").is_not_null()) if not by_state else m.clear()
        missing = m.filter(pl.col("value").is_null()) if not by_state else m.clear()
        values = valued.get_column("value").to_numpy()
        fig.data[_VALUE].update(
            visible=not by_state,
            meta=data.options.color_by,
            **_points(fig, valued),
            marker={"color": values, "colorbar": {"title": {"text": data.options.color_by}}},
        )
        fig.data[_NO_VALUE].update(
            visible=not by_state,
            name="no value" if by_state else f"no {data.options.color_by}",
            **_points(fig, missing),
        )
        s = data.sites
        fig.data[_SITES].update(
            **_coords(fig, s.get_column("lat").to_list(), s.get_column("lon").to_list()),
            text=[str(n) for n in s.get_column("machines").to_list()],
            customdata=s.get_column("hover").to_list(),
            marker={"size": [20 + min(n, 8) for n in s.get_column("machines").to_list()]},
        )
        annotations = [a for a in fig.layout.annotations if a.name != "empty"]
        if m.is_empty():
            annotations.append(
                go.layout.Annotation(
                    name="empty",
                    text="no machine with a position in this data",
                    xref="paper",
                    yref="paper",
                    x=0.5,
                    y=0.5,
                    showarrow=False,
                    font={"size": 14, "color": "#444"},
                    bgcolor="rgba(255,255,255,0.85)",
                )
            )
        fig.layout.annotations = annotations
        if fit:
            height = int(fig.layout.height or 600) - 40  # the legend's row
            view = _view(data, aspect=width / max(height, 100))
            _apply_base(fig, view, data.sites)
            _fit(fig, view, width)


def map_figure(
    frame: pl.DataFrame | MapData | None,
    *,
    color_by: str = "state",
    trails: bool = False,
    sites: Sequence[str] = (),
    oems: Sequence[str] = (),
    models: Sequence[str] = (),
    map_style: str | dict[str, Any] = "base",
    now: datetime | None = None,
    stale_after: str | timedelta = "2h",
    trail_points: int = 20,
    height: int = 600,
) -> go.Figure:
    """The machine map as a static ``go.Figure`` (for reports and non-widget frontends).

    ``frame`` may also be an already prepared :class:`MapData` (the other options are then
    taken from it).
    """
    if isinstance(frame, MapData):
        data = frame
    else:
        options = MapOptions(color_by, trails, tuple(sites), tuple(oems), tuple(models))
        data = prepare_map(
            frame, options, now=now, stale_after=stale_after, trail_points=trail_points
        )
    fig = _base_figure(map_style, height)
    _apply(fig, data, fit=True)
    return fig


def positions_figure(data: MapData, *, height: int = 600) -> go.Figure:
    """The map on plain axes (no WebGL, no worker, no tiles): :func:`map_figure` in ``"base"``.

    Kept for callers of the former fallback; the default map is now this kind already.
    """
    return map_figure(data, map_style="base", height=height)


class MachineMap:
    """Latest position per machine on an interactive map, with filters and a colouring choice.

    >>> MachineMap(window.main)            # doctest: +SKIP  (last expression: shows the widget)
    >>> m = MachineMap(); bind(tail, m)    # doctest: +SKIP  (live: the pump calls m.update)

    ``update(frame)`` redraws in place; ``figure()`` is the same view as a static figure and
    never builds a widget. With ``live=False`` (the default) the map is a static plotly figure
    under the controls (rendered by JupyterLab's plotly renderer: no plotly.js stored in the
    notebook); ``live=True`` draws into one ``FigureWidget`` updated in place, for a live tail.
    Errors raised by the controls or by live updates show under the map.
    """

    def __init__(
        self,
        frame: pl.DataFrame | None = None,
        *,
        color_by: str = "state",
        trails: bool = False,
        trail_points: int = 20,
        map_style: str | dict[str, Any] = "base",
        now: datetime | None = None,
        stale_after: str | timedelta = "2h",
        height: int = 600,
        fallback: bool = True,
        live: bool = False,
    ) -> None:
        self.now = now
        self.stale_after = stale_after
        self.trail_points = trail_points
        self.fallback = fallback
        self.live = live
        self._errors = ErrorBox()
        self._map_style = map_style
        self._height = height
        self._fig: go.FigureWidget | None = (
            go.FigureWidget(_base_figure(map_style, height)) if live else None
        )
        self._out = ipywidgets.Output()
        self._receipt = LiveStatus() if live else None
        self._syncing = False
        self._fitted: frozenset[str] | None = None

        self._color_by = ipywidgets.Dropdown(
            options=self._color_options([], color_by),
            value=color_by,
            description="colour",
            layout=ipywidgets.Layout(width="260px"),
        )
        self._trails = ipywidgets.Checkbox(
            value=trails, description="trails", indent=False, layout=ipywidgets.Layout(width="80px")
        )
        select = {"rows": 4, "layout": ipywidgets.Layout(width="200px")}
        self._sites = ipywidgets.SelectMultiple(options=[], description="site", **select)
        self._oems = ipywidgets.SelectMultiple(options=[], description="OEM", **select)
        self._models = ipywidgets.SelectMultiple(options=[], description="model", **select)
        self._fit = ipywidgets.Button(
            description="fit",
            tooltip="centre on the machines",
            layout=ipywidgets.Layout(width="60px"),
        )
        self._status = ipywidgets.HTML()
        on_change = self._errors.guard(self._on_controls, context="map controls")
        for control in (self._color_by, self._trails, self._sites, self._oems, self._models):
            control.observe(on_change, names="value")
        self._fit.on_click(self._errors.guard(lambda _: self.fit(), context="fit"))
        self.widget = ipywidgets.VBox(
            [
                ipywidgets.HBox([self._sites, self._oems, self._models]),
                ipywidgets.HBox([self._color_by, self._trails, self._fit, self._status]),
                *([self._receipt] if self._receipt is not None else []),
                self._fig if self._fig is not None else self._out,
                self._errors.widget,
            ]
        )
        self._data = _empty(self.options, pl.DataFrame())
        if frame is not None:
            self.update(frame)

    # -- state ---------------------------------------------------------------------------------

    @property
    def options(self) -> MapOptions:
        """The current control values."""
        return MapOptions(
            color_by=str(self._color_by.value),
            trails=bool(self._trails.value),
            sites=tuple(self._sites.value),
            oems=tuple(self._oems.value),
            models=tuple(self._models.value),
        )

    def set_options(self, **changes: Any) -> None:
        """Change controls from code (e.g. ``set_options(oems=("CAT",), color_by="FuelLevel")``)."""
        target = replace(self.options, **changes)
        self._sync_choices(self._data.choices, target)
        with self._hold():
            self._color_by.value = target.color_by
            self._trails.value = target.trails
            self._sites.value = tuple(v for v in target.sites if v in self._sites.options)
            self._oems.value = tuple(v for v in target.oems if v in self._oems.options)
            self._models.value = tuple(v for v in target.models if v in self._models.options)
        self._refresh(fit=True)

    @property
    def data(self) -> MapData:
        """What the map currently shows."""
        return self._data

    @property
    def machines(self) -> pl.DataFrame:
        """One row per machine on the map."""
        return self._data.machines

    @property
    def figure_widget(self) -> go.FigureWidget | None:
        """The live ``FigureWidget`` (``live=True``), else None."""
        return self._fig

    @property
    def errors(self) -> ErrorBox:
        return self._errors

    # -- updating --------------------------------------------------------------------------------

    def update(self, frame: pl.DataFrame) -> None:
        """Show ``frame`` (a Machine Insights ``main`` frame); redraws in place."""
        self.render(self.prepare(frame))

    def prepare(self, frame: pl.DataFrame) -> MapData:
        """The pure half of :meth:`update` (the live pump runs it off the event loop)."""
        data = prepare_map(
            frame,
            self.options,
            now=self.now,
            stale_after=self.stale_after,
            trail_points=self.trail_points,
        )
        if self._fig is not None:
            return data
        fig = map_figure(data, map_style=self._map_style, height=self._height)
        return replace(data, static=static_bundle(fig))

    def render(self, prepared: object) -> None:
        """The sending half of :meth:`update`."""
        if not isinstance(prepared, MapData):
            raise TypeError(f"expected MapData, got {type(prepared).__name__}")
        if prepared.options != self.options:  # a control changed while it was being prepared
            prepared = self.prepare(prepared.frame)
        self._draw(prepared, fit=None)

    def fit(self) -> None:
        """Centre and zoom on the machines shown."""
        if self._fig is None:
            self._show_static(self._data)
        else:
            _apply(self._fig, self._data, fit=True)
        self._fitted = frozenset(self._data.machines.get_column("MachineId").to_list())

    def show_error(self, error: BaseException, *, context: str = "") -> None:
        self._errors.show(error, context=context)

    def _on_controls(self, change: Any) -> None:
        if not self._syncing:
            self._refresh(fit=True)

    def _refresh(self, *, fit: bool) -> None:
        self._draw(self.prepare(self._data.frame), fit=fit)

    def _draw(self, data: MapData, *, fit: bool | None) -> None:
        ids = frozenset(data.machines.get_column("MachineId").to_list())
        if fit is None:
            # Re-centre only when the set of machines changes, so a live update does not undo the
            # user's pan and zoom.
            fit = self._fitted is None or (bool(ids) and ids != self._fitted)
        self._data = data
        self._sync_choices(data.choices, data.options)
        if self._fig is None:
            self._show_static(data)
        else:
            _apply(self._fig, data, fit=fit)
        if fit:
            self._fitted = ids
        if self._receipt is not None:
            self._receipt.update(data.frame)
        hidden = f", {data.without_position} without a position" if data.without_position else ""
        self._status.value = (
            f"<span style='color:#555'>{data.machines.height} machines{hidden}</span>"
        )

    def _hold(self) -> _Syncing:
        return _Syncing(self)

    def _sync_choices(self, choices: dict[str, list[str]], options: MapOptions) -> None:
        with self._hold():
            colours = self._color_options(choices.get("insights", []), options.color_by)
            if list(self._color_by.options) != colours:
                self._color_by.options = colours
            self._color_by.value = options.color_by
            for control, key, selected in (
                (self._sites, "sites", options.sites),
                (self._oems, "oems", options.oems),
                (self._models, "models", options.models),
            ):
                values = list(dict.fromkeys([*choices.get(key, []), *selected]))
                if list(control.options) != values:
                    control.options = values
                    control.value = tuple(v for v in selected if v in values)
            if self._data.site_column:
                self._sites.description = self._data.site_column

    @staticmethod
    def _color_options(insights: Sequence[str], current: str) -> list[str]:
        return list(dict.fromkeys(["state", *insights, current]))

    # -- display -----------------------------------------------------------------------------------

    def figure(self) -> go.Figure:
        """The current view as a static ``go.Figure`` (nbviewer, GitHub, nbconvert, reports).

        Never builds a widget; a live map's pan and zoom are kept.
        """
        fig = _base_figure(self._map_style, self._height)
        _apply(fig, self._data, fit=True)
        if self._fig is not None:
            if isinstance(fig.data[0], go.Scattermap):
                fig.layout.map.center = self._fig.layout.map.center
                fig.layout.map.zoom = self._fig.layout.map.zoom
            else:
                fig.layout.xaxis.range = self._fig.layout.xaxis.range
                fig.layout.yaxis.range = self._fig.layout.yaxis.range
        return fig

    def _show_static(self, data: MapData) -> None:
        bundle = data.static
        if bundle is None:
            bundle = static_bundle(map_figure(data, map_style=self._map_style,
                                              height=self._height))
        self._out.outputs = ({"output_type": "display_data", "data": bundle, "metadata": {}},)

    def to_html(self, *, include_plotlyjs: bool | str = True, full_html: bool = True) -> str:
        """The current view as HTML; with the default, plotly.js is inlined (works offline).

        A full page carries the same ``file://`` worker fix as the report, so the map also
        starts when the page is opened from disk in Chromium.
        """
        html: str = self.figure().to_html(include_plotlyjs=include_plotlyjs, full_html=full_html)
        if full_html:
            # Must run before plotly.js, which the head or body inlines.
            html = html.replace("<head>", "<head>" + FILE_WORKER_JS, 1)
        return html

    def show_static(self) -> None:
        """Display the static figure instead of the widget."""
        from IPython import display as ipd

        show: Callable[..., object] = ipd.display
        show(self.figure())

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        widgets = [self._fig] if self._fig is not None else []
        return view_bundle(self.widget, widgets, [self.figure()], fallback=self.fallback)

    def __repr__(self) -> str:
        n = self._data.machines.height
        return f"<MachineMap: {n} machines, colour by {self.options.color_by}>"


class _Syncing:
    """Silences control observers while code (not the user) changes the controls."""

    def __init__(self, owner: MachineMap) -> None:
        self._owner = owner
        self._outer = False

    def __enter__(self) -> None:
        self._outer = self._owner._syncing
        self._owner._syncing = True

    def __exit__(self, *exc: object) -> None:
        self._owner._syncing = self._outer
