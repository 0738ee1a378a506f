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

This module holds the widget (:class:`MachineMap`: controls, live updates, HTML export); the
data is prepared in :mod:`~tu_analytics.widgets._map_data` and the figure built in
:mod:`~tu_analytics.widgets._map_figure`, both re-exported here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import ipywidgets
import plotly.graph_objects as go
import polars as pl

from tu_analytics.widgets._data import FILE_WORKER_JS, static_bundle, view_bundle
from tu_analytics.widgets._errors import ErrorBox
from tu_analytics.widgets._map_data import _CUSTOM as _CUSTOM  # hover columns, for tests
from tu_analytics.widgets._map_data import (
    STATE_COLOURS,
    STATES,
    MapData,
    MapOptions,
    _empty,
    prepare_map,
)
from tu_analytics.widgets._map_figure import (
    _apply,
    _base_figure,
    is_tile_style,
    map_figure,
    positions_figure,
)
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


#: The width plotly.js gives a FigureWidget it draws before the page has laid it out (its
#: default): the live map's view is fitted to it, so the map fills its plot without bands.
_LIVE_WIDTH = 700


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
        self._build_controls(color_by, trails)
        self.widget = self._layout()
        self._data = _empty(self.options, pl.DataFrame())
        if frame is not None:
            self.update(frame)

    def _build_controls(self, color_by: str, trails: bool) -> None:
        """The filters, the colouring, trails and fit, each wired to redraw the map."""
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

    def _layout(self) -> ipywidgets.VBox:
        return ipywidgets.VBox(
            [
                ipywidgets.HBox([self._sites, self._oems, self._models]),
                ipywidgets.HBox([self._color_by, self._trails, self._fit, self._status]),
                *([self._receipt] if self._receipt is not None else []),
                self._fig if self._fig is not None else self._out,
                self._errors.widget,
            ]
        )

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
            _apply(self._fig, self._data, fit=True, width=_LIVE_WIDTH)
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
            _apply(self._fig, data, fit=fit, width=_LIVE_WIDTH)
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
            bundle = static_bundle(map_figure(data, map_style=self._map_style, height=self._height))
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
