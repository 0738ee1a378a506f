"""The machine map: latest position per machine, coloured by state or by an insight.

One ``go.FigureWidget`` with a fixed set of ``Scattermap`` (MapLibre) traces is created once;
every update assigns new arrays to those traces inside ``batch_update()``, so a redraw is one
message and the figure is never re-created. :func:`map_figure` builds the same picture as a
static ``go.Figure`` (reports, nbviewer, GitHub).

Map tiles need the internet; the default style ``white-bg`` needs none, so markers draw offline.
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

from tu_analytics.utilisation import machine_state
from tu_analytics.widgets._data import (
    FILE_WORKER_JS,
    IDENTITY,
    fit_view,
    last_values,
    machine_labels,
    numeric_insights,
    site_column,
    valid_positions,
    view_bundle,
)
from tu_analytics.widgets._errors import ErrorBox

__all__ = [
    "STATES",
    "STATE_COLOURS",
    "MachineMap",
    "MapData",
    "MapOptions",
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
# Trace order is fixed for the life of a figure: trails (below), one trace per state, then the
# continuous colouring and the machines that have no value for it.
_TRAILS = 0
_STATE0 = 1
# Later traces draw on top: machines at one site overlap, and a working machine should not
# hide under an idle one. The legend keeps the STATES order through legendrank.
_DRAW_ORDER: tuple[str, ...] = tuple(reversed(STATES))
_VALUE = _STATE0 + len(STATES)
_NO_VALUE = _VALUE + 1
_HOVER = (
    "<b>%{customdata[0]}</b><br>"
    "%{customdata[1]} %{customdata[2]}<br>"
    "MachineId: %{customdata[3]}<br>"
    "state: %{customdata[4]}<br>"
    "operating hours: %{customdata[5]}<br>"
    "fuel level: %{customdata[6]}<br>"
    "last seen: %{customdata[7]}<br>"
    "site: %{customdata[8]}"
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
    positions = valid_positions(frame)
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
    ).sort("label")

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
    )


def _base_figure(map_style: str | dict[str, Any], height: int) -> go.Figure:
    traces: list[go.Scattermap] = [
        go.Scattermap(
            name="trails",
            mode="lines",
            lat=[],
            lon=[],
            hoverinfo="skip",
            showlegend=False,
            line={"width": 2, "color": "rgba(60,90,140,0.45)"},
            connectgaps=False,
        )
    ]
    traces += [
        go.Scattermap(
            name=state,
            mode="markers",
            lat=[],
            lon=[],
            legendgroup="state",
            legendrank=1000 + STATES.index(state),
            marker={"size": 11, "color": STATE_COLOURS[state]},
            hovertemplate=_HOVER + "<extra></extra>",
        )
        for state in _DRAW_ORDER
    ]
    traces += [
        go.Scattermap(
            name="value",
            mode="markers",
            lat=[],
            lon=[],
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
        go.Scattermap(
            name="no value",
            mode="markers",
            lat=[],
            lon=[],
            visible=False,
            marker={"size": 9, "color": "#c7c7c7"},
            hovertemplate=_HOVER + "<extra></extra>",
        ),
    ]
    fig = go.Figure(data=traces)
    fig.update_layout(
        height=height,
        margin={"l": 0, "r": 0, "t": 30, "b": 0},
        map={"style": map_style, "center": {"lat": 20, "lon": 0}, "zoom": 1, "uirevision": "keep"},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "x": 0},
        uirevision="keep",
    )
    return fig


def _custom(frame: pl.DataFrame) -> np.ndarray[Any, Any]:
    if frame.is_empty():
        return np.empty((0, len(_CUSTOM)), dtype=object)
    return frame.select(list(_CUSTOM)).to_numpy().astype(object)


def _points(frame: pl.DataFrame) -> dict[str, Any]:
    return {
        "lat": frame.get_column("Latitude").to_numpy(),
        "lon": frame.get_column("Longitude").to_numpy(),
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


def _apply(fig: Any, data: MapData, *, fit: bool, width: int = 900) -> None:
    """Write ``data`` into the fixed traces of ``fig`` (a Figure or a FigureWidget)."""
    m = data.machines
    by_state = data.options.color_by == "state"
    with fig.batch_update():
        lats, lons = _trail_arrays(data.trails)
        fig.data[_TRAILS].update(lat=lats, lon=lons, visible=data.options.trails)
        for i, state in enumerate(_DRAW_ORDER):
            subset = m.filter(pl.col("state") == state) if by_state else m.clear()
            fig.data[_STATE0 + i].update(visible=by_state, **_points(subset))
        valued = m.filter(pl.col("value").is_not_null()) if not by_state else m.clear()
        missing = m.filter(pl.col("value").is_null()) if not by_state else m.clear()
        values = valued.get_column("value").to_numpy()
        fig.data[_VALUE].update(
            visible=not by_state,
            meta=data.options.color_by,
            **_points(valued),
            marker={"color": values, "colorbar": {"title": {"text": data.options.color_by}}},
        )
        fig.data[_NO_VALUE].update(
            visible=not by_state,
            name="no value" if by_state else f"no {data.options.color_by}",
            **_points(missing),
        )
        if fit:
            height = int(fig.layout.height or 600)
            centre, zoom = fit_view(
                m.get_column("Latitude").to_list(),
                m.get_column("Longitude").to_list(),
                width=width,
                height=height,
            )
            fig.layout.map.center = centre
            fig.layout.map.zoom = zoom


def map_figure(
    frame: pl.DataFrame | MapData | None,
    *,
    color_by: str = "state",
    trails: bool = False,
    sites: Sequence[str] = (),
    oems: Sequence[str] = (),
    models: Sequence[str] = (),
    map_style: str | dict[str, Any] = "white-bg",
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
    """The map's markers on plain longitude/latitude axes: no WebGL, no worker, no tiles.

    A fallback for where MapLibre cannot start. Chromium and Safari refuse MapLibre's worker
    in a page opened from a ``file://`` URL, so a ``Scattermap`` saved to disk shows an empty
    map there (plotly.py #5474, maplibre-gl-js #3680) while SVG traces always draw.
    """
    source = map_figure(data, height=height)
    traces = [
        go.Scatter(
            x=trace.lon,
            y=trace.lat,
            name=trace.name,
            mode=trace.mode,
            visible=trace.visible,
            showlegend=trace.showlegend,
            legendgroup=trace.legendgroup,
            marker=trace.marker.to_plotly_json() if trace.mode != "lines" else None,
            line=trace.line.to_plotly_json() if trace.mode == "lines" else None,
            customdata=trace.customdata,
            hovertemplate=trace.hovertemplate,
            hoverinfo=trace.hoverinfo,
            meta=trace.meta,
            connectgaps=False,
        )
        for trace in source.data
    ]
    fig = go.Figure(data=traces)
    lats = data.machines.get_column("Latitude")
    mid = float(lats.mean()) if lats.len() else 0.0  # type: ignore[arg-type]
    fig.update_layout(
        height=height,
        template="plotly_white",
        margin={"l": 50, "r": 10, "t": 30, "b": 40},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.0, "x": 0},
        xaxis={"title": "longitude", "zeroline": False},
        # Equirectangular at the fleet's latitude: a degree of longitude is cos(lat) shorter.
        yaxis={
            "title": "latitude",
            "zeroline": False,
            "scaleanchor": "x",
            "scaleratio": 1 / max(math.cos(math.radians(mid)), 0.05),
        },
    )
    return fig


class MachineMap:
    """Latest position per machine on an interactive map, with filters and a colouring choice.

    >>> MachineMap(window.main)            # doctest: +SKIP  (last expression: shows the widget)
    >>> m = MachineMap(); bind(tail, m)    # doctest: +SKIP  (live: the pump calls m.update)

    ``update(frame)`` redraws in place; ``figure()`` is the same view as a static figure.
    Errors raised by the controls or by live updates show under the map.
    """

    def __init__(
        self,
        frame: pl.DataFrame | None = None,
        *,
        color_by: str = "state",
        trails: bool = False,
        trail_points: int = 20,
        map_style: str | dict[str, Any] = "white-bg",
        now: datetime | None = None,
        stale_after: str | timedelta = "2h",
        height: int = 600,
        fallback: bool = True,
    ) -> None:
        self.now = now
        self.stale_after = stale_after
        self.trail_points = trail_points
        self.fallback = fallback
        self._errors = ErrorBox()
        self._map_style = map_style
        self._fig = go.FigureWidget(_base_figure(map_style, height))
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
                self._fig,
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
    def figure_widget(self) -> go.FigureWidget:
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
        return prepare_map(
            frame,
            self.options,
            now=self.now,
            stale_after=self.stale_after,
            trail_points=self.trail_points,
        )

    def render(self, prepared: object) -> None:
        """The sending half of :meth:`update`."""
        if not isinstance(prepared, MapData):
            raise TypeError(f"expected MapData, got {type(prepared).__name__}")
        if prepared.options != self.options:  # a control changed while it was being prepared
            prepared = self.prepare(prepared.frame)
        self._draw(prepared, fit=None)

    def fit(self) -> None:
        """Centre and zoom on the machines shown."""
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
            fit = bool(ids) and ids != self._fitted
        self._data = data
        self._sync_choices(data.choices, data.options)
        _apply(self._fig, data, fit=fit)
        if fit:
            self._fitted = ids
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
        """The current view as a static ``go.Figure`` (nbviewer, GitHub, nbconvert, reports)."""
        fig = _base_figure(self._map_style, int(self._fig.layout.height or 600))
        _apply(fig, self._data, fit=False)
        # Keep the view the user panned or zoomed to.
        fig.layout.map.center = self._fig.layout.map.center
        fig.layout.map.zoom = self._fig.layout.map.zoom
        return fig

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
        return view_bundle(self.widget, [self._fig], [self.figure()], fallback=self.fallback)

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
