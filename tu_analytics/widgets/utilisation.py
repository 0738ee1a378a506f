"""Utilisation charts: operating vs idle hours per machine per day, fleet utilisation over time,
and a machine × hour-of-day heatmap.

The numbers come from :mod:`tu_analytics.utilisation` (pure functions on the ``main`` frame);
this module only draws them. Each chart is one ``go.FigureWidget`` created once and updated in
place; :func:`utilisation_figures` builds the same charts as static ``go.Figure`` objects.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import ipywidgets
import numpy as np
import plotly.graph_objects as go
import polars as pl

from tu_analytics.utilisation import daily_hours, fleet_utilisation, hour_of_day
from tu_analytics.widgets._data import machine_labels, view_bundle
from tu_analytics.widgets._errors import ErrorBox

__all__ = ["UtilisationData", "UtilisationView", "prepare_utilisation", "utilisation_figures"]

_OPERATING = "#2ca02c"
_IDLE = "#ff9f1c"
_CHARTS = ("daily", "fleet", "hour_of_day")


@dataclass(frozen=True, slots=True)
class UtilisationData:
    """The utilisation frames a view draws (see :mod:`tu_analytics.utilisation`)."""

    daily: pl.DataFrame
    """``MachineId, date, operating_hours, idle_hours, utilisation`` plus ``label``."""
    fleet: pl.DataFrame
    """``bucket_start, machines_reporting, operating_hours, idle_hours, utilisation``."""
    hour_of_day: pl.DataFrame
    """``MachineId, hour, operating_hours`` plus ``label``."""
    tz: str = "UTC"
    every: str | timedelta = "1h"
    frame: pl.DataFrame | None = None
    """The frame these were computed from."""


def prepare_utilisation(
    frame: pl.DataFrame | None,
    *,
    tz: str = "UTC",
    every: str | timedelta = "1h",
    shift_hours: float | None = None,
) -> UtilisationData:
    """Compute the three utilisation frames for ``frame`` (pure)."""
    main = pl.DataFrame() if frame is None else frame
    labels = machine_labels(main)
    daily = (
        daily_hours(main, tz=tz, shift_hours=shift_hours)
        .join(labels, on="MachineId", how="left")
        .with_columns(pl.col("label").fill_null(pl.col("MachineId")))
        .sort("date", "label")
    )
    # An empty input gives one all-null bucket; nothing to draw there.
    fleet = fleet_utilisation(main, every=every).filter(pl.col("bucket_start").is_not_null())
    hours = (
        hour_of_day(main, tz=tz)
        .join(labels, on="MachineId", how="left")
        .with_columns(pl.col("label").fill_null(pl.col("MachineId")))
        .sort("label", "hour")
    )
    return UtilisationData(daily, fleet, hours, tz=tz, every=every, frame=frame)


def _base_figures(height: int) -> dict[str, go.Figure]:
    daily = go.Figure(
        data=[
            go.Bar(name="operating", x=[[], []], y=[], marker_color=_OPERATING),
            go.Bar(name="idle", x=[[], []], y=[], marker_color=_IDLE),
        ]
    )
    daily.update_layout(
        barmode="stack",
        height=height,
        title={"text": "Operating and idle hours per machine per day", "x": 0.01},
        yaxis_title="hours",
        margin={"l": 60, "r": 20, "t": 50, "b": 90},
        legend={"orientation": "h", "y": 1.02, "yanchor": "bottom", "x": 1, "xanchor": "right"},
        uirevision="keep",
    )
    fleet = go.Figure(
        data=[
            go.Scatter(
                name="utilisation",
                mode="lines+markers",
                x=[],
                y=[],
                line={"color": "#1f77b4", "width": 2},
                marker={"size": 4},
                hovertemplate=(
                    "%{x}<br>utilisation: %{y:.1f} %<br>machines reporting: %{customdata[0]}"
                    "<br>operating: %{customdata[1]:.2f} h<br>idle: %{customdata[2]:.2f} h"
                    "<extra></extra>"
                ),
            )
        ]
    )
    fleet.update_layout(
        height=height - 40,
        title={"text": "Fleet utilisation", "x": 0.01},
        yaxis={"title": "% of machine-time operating", "rangemode": "tozero"},
        margin={"l": 60, "r": 20, "t": 50, "b": 40},
        uirevision="keep",
    )
    heat = go.Figure(
        data=[
            go.Heatmap(
                z=[],
                x=list(range(24)),
                y=[],
                colorscale="Blues",
                zmin=0,
                colorbar={"title": {"text": "h"}, "thickness": 14},
                hovertemplate="%{y}<br>hour %{x}:00<br>%{z:.2f} h operating<extra></extra>",
            )
        ]
    )
    heat.update_layout(
        height=height,
        title={"text": "Operating hours by hour of day", "x": 0.01},
        xaxis={"title": "hour of day", "dtick": 1},
        yaxis={"automargin": True, "type": "category"},
        margin={"l": 60, "r": 20, "t": 50, "b": 40},
        uirevision="keep",
    )
    return {"daily": daily, "fleet": fleet, "hour_of_day": heat}


def _floats(series: pl.Series, scale: float = 1.0) -> list[float | None]:
    # Nulls go out as None (JSON null: a gap in the line). NaN is not valid JSON, and
    # jupyter_client would send it as the string "nan" with a warning under the widget.
    return (series.cast(pl.Float64) * scale).fill_nan(None).to_list()


def _apply(figs: dict[str, Any], data: UtilisationData, *, base_height: int) -> None:
    """Write ``data`` into the fixed traces of the three figures (Figures or FigureWidgets)."""
    d = data.daily
    x = [d.get_column("date").cast(pl.String).to_list(), d.get_column("label").to_list()]
    with figs["daily"].batch_update():
        figs["daily"].data[0].update(x=x, y=_floats(d.get_column("operating_hours")))
        figs["daily"].data[1].update(x=x, y=_floats(d.get_column("idle_hours")))
        figs["daily"].layout.xaxis.title = f"day ({data.tz}) / machine"

    f = data.fleet
    local = f.get_column("bucket_start").dt.convert_time_zone("UTC").dt.replace_time_zone(None)
    custom = [
        list(row)
        for row in f.select(
            pl.col("machines_reporting").cast(pl.Int64),
            pl.col("operating_hours").cast(pl.Float64).fill_nan(None),
            pl.col("idle_hours").cast(pl.Float64).fill_nan(None),
        ).rows()
    ]
    with figs["fleet"].batch_update():
        figs["fleet"].data[0].update(
            x=local.to_numpy(),
            y=_floats(f.get_column("utilisation"), 100.0),
            customdata=custom,
        )
        figs["fleet"].layout.xaxis.title = f"bucket start (UTC, every {data.every})"

    h = data.hour_of_day
    labels = h.get_column("label").unique(maintain_order=True).to_list()
    z = np.empty((0, 24))
    if h.height:
        wide = h.pivot(on="hour", index="label", values="operating_hours", sort_columns=True)
        hours = [str(i) for i in range(24)]
        wide = wide.with_columns(pl.lit(0.0).alias(c) for c in hours if c not in wide.columns)
        # An hour with no reading in the heatmap is no operation: 0, never NaN (see _floats).
        z = wide.select(hours).cast(pl.Float64).fill_null(0.0).fill_nan(0.0).to_numpy()
        labels = wide.get_column("label").to_list()
    with figs["hour_of_day"].batch_update():
        figs["hour_of_day"].data[0].update(z=z, y=labels)
        figs["hour_of_day"].layout.height = max(base_height, 24 * len(labels) + 120)


def utilisation_figures(
    frame: pl.DataFrame | None,
    *,
    tz: str = "UTC",
    every: str | timedelta = "1h",
    shift_hours: float | None = None,
    height: int = 380,
) -> dict[str, go.Figure]:
    """The three utilisation charts as static figures: ``daily``, ``fleet``, ``hour_of_day``."""
    figs = _base_figures(height)
    _apply(
        figs,
        prepare_utilisation(frame, tz=tz, every=every, shift_hours=shift_hours),
        base_height=height,
    )
    return figs


class UtilisationView:
    """Operating vs idle hours, fleet utilisation and an hour-of-day heatmap, updated in place.

    >>> UtilisationView(window.main, tz="Europe/Copenhagen")   # doctest: +SKIP

    The charts are stacked in a ``VBox`` rather than a ``Tab``: a figure in a hidden tab is
    laid out at zero width and stays wrong until resized. ``data`` holds the frames drawn.
    """

    def __init__(
        self,
        frame: pl.DataFrame | None = None,
        *,
        tz: str = "UTC",
        every: str | timedelta = "1h",
        shift_hours: float | None = None,
        height: int = 380,
        fallback: bool = True,
    ) -> None:
        self.tz = tz
        self.every = every
        self.shift_hours = shift_hours
        self.fallback = fallback
        self._height = height
        self._errors = ErrorBox()
        self._figs: dict[str, Any] = {
            name: go.FigureWidget(fig) for name, fig in _base_figures(height).items()
        }
        self._status = ipywidgets.HTML()
        self.widget = ipywidgets.VBox(
            [self._status, *(self._figs[name] for name in _CHARTS), self._errors.widget]
        )
        self._data = prepare_utilisation(None, tz=tz, every=every)
        if frame is not None:
            self.update(frame)

    @property
    def data(self) -> UtilisationData:
        """The utilisation frames currently drawn."""
        return self._data

    @property
    def figure_widgets(self) -> dict[str, go.FigureWidget]:
        return dict(self._figs)

    @property
    def errors(self) -> ErrorBox:
        return self._errors

    def update(self, frame: pl.DataFrame) -> None:
        """Recompute from ``frame`` and redraw the three charts in place."""
        self.render(self.prepare(frame))

    def prepare(self, frame: pl.DataFrame) -> UtilisationData:
        """The pure half of :meth:`update` (the live pump runs it off the event loop)."""
        return prepare_utilisation(
            frame, tz=self.tz, every=self.every, shift_hours=self.shift_hours
        )

    def render(self, prepared: object) -> None:
        """The sending half of :meth:`update`."""
        if not isinstance(prepared, UtilisationData):
            raise TypeError(f"expected UtilisationData, got {type(prepared).__name__}")
        _apply(self._figs, prepared, base_height=self._height)
        self._data = prepared
        n = prepared.hour_of_day.get_column("MachineId").n_unique()
        self._status.value = f"<span style='color:#555'>{n} machines with hour counters</span>"

    def show_error(self, error: BaseException, *, context: str = "") -> None:
        self._errors.show(error, context=context)

    def figures(self) -> dict[str, go.Figure]:
        """The current charts as static figures (nbviewer, GitHub, nbconvert, reports)."""
        figs = _base_figures(self._height)
        _apply(figs, self._data, base_height=self._height)
        return figs

    def show_static(self) -> None:
        """Display the static figures instead of the widgets."""
        from IPython import display as ipd

        show: Callable[..., object] = ipd.display
        show(*self.figures().values())

    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        return view_bundle(
            self.widget,
            list(self._figs.values()),
            list(self.figures().values()),
            fallback=self.fallback,
        )

    def __repr__(self) -> str:
        return f"<UtilisationView: {self._data.daily.height} machine-days, tz={self.tz}>"
