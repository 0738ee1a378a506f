"""The machine map's figure: a fixed set of traces, filled from a :class:`MapData`.

Part of :mod:`tu_analytics.widgets.map` (import from there). The same traces serve a static
``go.Figure`` and a live ``go.FigureWidget``: :func:`_apply` only assigns new arrays to them,
so a redraw is one message. Plain axes with the shipped base layer, or MapLibre with tiles.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import plotly.graph_objects as go
import polars as pl

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
from tu_analytics.widgets._data import empty_note, fit_view
from tu_analytics.widgets._map_data import (
    _CUSTOM,
    STATE_COLOURS,
    STATES,
    MapData,
    MapOptions,
    prepare_map,
)

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


def _machine_traces(tiles: bool) -> list[go.Scatter | go.Scattermap]:
    """The trails, then one trace per state (in draw order)."""
    trails = _trace(
        tiles,
        name="trails",
        mode="lines",
        hoverinfo="skip",
        showlegend=False,
        line={"width": 2, "color": "rgba(60,90,140,0.45)"},
        connectgaps=False,
    )
    return [
        trails,
        *(
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
        ),
    ]


def _base_figure(map_style: str | dict[str, Any], height: int) -> go.Figure:
    tiles = is_tile_style(map_style)
    styles = trace_styles()
    traces = [_trace(tiles, **styles[name]) for name in ("land", "borders", "places")]
    fig = go.Figure(data=[*traces, *_machine_traces(tiles), *_overlay_traces(tiles)])
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
        empty_note(fig, "no machine with a position in this data" if m.is_empty() else None)
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
