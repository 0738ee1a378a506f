"""Utilisation charts that scale to fleets: operating hours per machine × local day, fleet
utilisation over time, and operating hours per machine × hour of day.

The numbers come from :mod:`tu_analytics.utilisation` (pure functions on the ``main`` frame);
this module only draws them. Every chart states its aggregation in its title, starts its axes
and colour scales at 0 (zero is drawn as zero, never mid-scale), and says what is true when
there is nothing to draw ("all 33 machines off since Fri 16:05 CET"). Machines are rows, so a
fleet of hundreds stays readable (one row per machine, named by EquipmentID and site).

Shown as static plotly figures by default (no plotly.js stored per figure); ``live=True``
draws into ``FigureWidget`` s updated in place.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import ipywidgets
import numpy as np
import plotly.graph_objects as go
import polars as pl

from tu_analytics.utilisation import (
    SITE_TZ,
    activity_summary,
    daily_hours,
    fleet_utilisation,
    hour_of_day,
)
from tu_analytics.widgets._data import empty_note, machine_labels, static_bundle, view_bundle
from tu_analytics.widgets._errors import ErrorBox
from tu_analytics.widgets.status import LiveStatus

__all__ = ["UtilisationData", "UtilisationView", "prepare_utilisation", "utilisation_figures"]

_CHARTS = ("daily", "fleet", "hour_of_day")
# White at zero, so a machine that did not work is a blank cell, not a tinted one.
_GREENS = [[0.0, "#ffffff"], [0.05, "#e5f5e0"], [0.5, "#74c476"], [1.0, "#00441b"]]
_ROW_PX = 20


@dataclass(frozen=True, slots=True)
class UtilisationData:
    """The utilisation frames a view draws (see :mod:`tu_analytics.utilisation`)."""

    daily: pl.DataFrame
    """``daily_hours`` columns plus ``label`` (EquipmentID · site)."""
    fleet: pl.DataFrame
    """``bucket_start, machines_reporting, operating_hours, idle_hours, utilisation``."""
    hour_of_day: pl.DataFrame
    """``hour_of_day`` columns plus ``label``."""
    tz: str = "UTC"
    every: str | timedelta = "1h"
    frame: pl.DataFrame | None = None
    """The frame these were computed from."""
    summary: str = ""
    """:func:`~tu_analytics.utilisation.activity_summary` of the frame."""


def _labelled(out: pl.DataFrame, labels: pl.DataFrame) -> pl.DataFrame:
    site = pl.col("site") if "site" in out.columns else pl.lit(None, pl.String)
    return (
        out.join(labels, on="MachineId", how="left")
        .with_columns(pl.col("label").fill_null(pl.col("MachineId")))
        .with_columns(
            pl.when(site.is_not_null())
            .then(pl.format("{} · {}", pl.col("label"), site))
            .otherwise(pl.col("label"))
            .alias("label")
        )
    )


def prepare_utilisation(
    frame: pl.DataFrame | None,
    *,
    tz: str = "UTC",
    every: str | timedelta = "1h",
    shift_hours: float | None = None,
    now: datetime | None = None,
) -> UtilisationData:
    """Compute the three utilisation frames for ``frame`` (pure).

    ``tz`` is an IANA zone or ``"site"`` (each machine in its own local time).
    """
    main = pl.DataFrame() if frame is None else frame
    labels = machine_labels(main)
    daily = _labelled(daily_hours(main, tz=tz, shift_hours=shift_hours), labels).sort(
        "date", "label"
    )
    # An empty input gives one all-null bucket; nothing to draw there.
    fleet = fleet_utilisation(main, every=every).filter(pl.col("bucket_start").is_not_null())
    hours = _labelled(hour_of_day(main, tz=tz), labels).sort("label", "hour")
    summary = activity_summary(main, now=now, tz=tz) if main.width else "no data"
    return UtilisationData(daily, fleet, hours, tz=tz, every=every, frame=frame, summary=summary)


def _zone_text(tz: str) -> str:
    return "each site's local time" if tz == SITE_TZ else tz


def _hours_figure(common: dict[str, Any]) -> go.Figure:
    heat = go.Figure(
        go.Heatmap(
            z=[],
            x=list(range(24)),
            y=[],
            colorscale=_GREENS,
            zmin=0,
            zmax=1,
            xgap=1,
            ygap=1,
            colorbar={"title": {"text": "h"}, "thickness": 14},
            hovertemplate="%{y}<br>hour %{x}:00<br>%{z:.2f} h operating<extra></extra>",
        )
    )
    heat.update_layout(
        **common,
        xaxis={"title": "hour of day", "dtick": 1},
        yaxis={"automargin": True, "type": "category", "autorange": "reversed"},
    )
    return heat


def _base_figures(height: int) -> dict[str, go.Figure]:
    common = {
        "height": height,
        "uirevision": "keep",
        "margin": {"l": 60, "r": 20, "t": 60, "b": 50},
    }
    daily = go.Figure(
        go.Heatmap(
            z=[],
            x=[],
            y=[],
            zmin=0,
            zmax=1,
            colorscale=_GREENS,
            colorbar={"title": {"text": "h"}, "thickness": 14},
            xgap=1,
            ygap=1,
            hovertemplate="%{y}<br>%{x}<br>operating %{z:.2f} h<br>idle %{customdata:.2f} h"
            "<extra></extra>",
        )
    )
    daily.update_layout(
        **common,
        xaxis={"type": "category", "title": "local day"},
        yaxis={"type": "category", "automargin": True, "autorange": "reversed"},
    )
    fleet = go.Figure(
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
    )
    fleet.update_layout(
        **{**common, "height": height - 40},
        title={"text": "Fleet utilisation: operating hours ÷ machine-hours reporting", "x": 0.01},
        yaxis={"title": "% of machine-time operating", "rangemode": "tozero", "range": [0, 100]},
    )
    return {"daily": daily, "fleet": fleet, "hour_of_day": _hours_figure(common)}


def _floats(series: pl.Series, scale: float = 1.0) -> list[float | None]:
    # Nulls go out as None (JSON null: a gap in the line). NaN is not valid JSON, and
    # jupyter_client would send it as the string "nan" with a warning under the widget.
    return (series.cast(pl.Float64) * scale).fill_nan(None).to_list()


def _grid(frame: pl.DataFrame, column: str, value: str, columns: list[str]) -> pl.DataFrame:
    """``label`` × ``columns`` of ``value``; a missing cell is 0 (no operation), never NaN."""
    if frame.is_empty():
        return pl.DataFrame({"label": pl.Series([], dtype=pl.String)}).with_columns(
            pl.lit(0.0).alias(c) for c in columns
        )
    wide = frame.with_columns(pl.col(column).cast(pl.String)).pivot(
        on=column, index="label", values=value, aggregate_function="sum", sort_columns=True
    )
    wide = wide.with_columns(pl.lit(0.0).alias(c) for c in columns if c not in wide.columns)
    return wide.select("label", *columns).with_columns(
        pl.col(columns).cast(pl.Float64).fill_null(0.0).fill_nan(0.0)
    )


def _apply_daily(fig: Any, data: UtilisationData, base_height: int) -> None:
    d = data.daily
    days = sorted({str(v) for v in d.get_column("date").to_list()})
    op = _grid(d, "date", "operating_hours", days)
    idle = _grid(d, "date", "idle_hours", days)
    z = op.select(days).to_numpy() if days else np.empty((op.height, 0))
    top = float(z.max()) if z.size else 0.0
    with fig.batch_update():
        fig.data[0].update(
            z=z,
            x=days,
            y=op.get_column("label").to_list(),
            customdata=idle.select(days).to_numpy() if days else None,
            zmax=max(top, 1.0),
        )
        fig.layout.title = {
            "text": f"Operating hours per machine per day ({_zone_text(data.tz)}): sum of the"
            " operating-hour counter's increase",
            "x": 0.01,
            "font": {"size": 14},
        }
        fig.layout.height = max(base_height, _ROW_PX * op.height + 140)
        empty_note(fig, None if top > 0 else data.summary)


def _apply_fleet(fig: Any, data: UtilisationData) -> None:
    f = data.fleet
    zone = data.tz if data.tz != SITE_TZ else "UTC"
    local = f.get_column("bucket_start").dt.convert_time_zone(zone).dt.replace_time_zone(None)
    custom = [
        list(row)
        for row in f.select(
            pl.col("machines_reporting").cast(pl.Int64),
            pl.col("operating_hours").cast(pl.Float64).fill_nan(None),
            pl.col("idle_hours").cast(pl.Float64).fill_nan(None),
        ).rows()
    ]
    y = _floats(f.get_column("utilisation"), 100.0)
    top = max((v for v in y if v is not None), default=0.0)
    with fig.batch_update():
        fig.data[0].update(x=local.to_numpy(), y=y, customdata=custom)
        fig.layout.xaxis.title = f"bucket start ({zone}, every {data.every})"
        fig.layout.yaxis.range = [0, max(10.0, min(100.0, top * 1.15))]
        empty_note(fig, None if top > 0 else data.summary)


def _apply_hours(fig: Any, data: UtilisationData, base_height: int) -> None:
    h = data.hour_of_day
    hours = [str(i) for i in range(24)]
    wide = _grid(h, "hour", "operating_hours", hours)
    z = wide.select(hours).to_numpy() if wide.height else np.empty((0, 24))
    top = float(z.max()) if z.size else 0.0
    with fig.batch_update():
        fig.data[0].update(z=z, y=wide.get_column("label").to_list(), zmax=max(top, 1.0))
        fig.layout.title = {
            "text": f"Operating hours by hour of day ({_zone_text(data.tz)}): total over the"
            " window",
            "x": 0.01,
            "font": {"size": 14},
        }
        fig.layout.height = max(base_height, _ROW_PX * wide.height + 140)
        empty_note(fig, None if top > 0 else data.summary)


def _apply(figs: dict[str, Any], data: UtilisationData, *, base_height: int) -> None:
    """Write ``data`` into the fixed traces of the three figures (Figures or FigureWidgets)."""
    _apply_daily(figs["daily"], data, base_height)
    _apply_fleet(figs["fleet"], data)
    _apply_hours(figs["hour_of_day"], data, base_height)


def utilisation_figures(
    frame: pl.DataFrame | UtilisationData | None,
    *,
    tz: str = "UTC",
    every: str | timedelta = "1h",
    shift_hours: float | None = None,
    height: int = 380,
) -> dict[str, go.Figure]:
    """The three utilisation charts as static figures: ``daily``, ``fleet``, ``hour_of_day``."""
    figs = _base_figures(height)
    data = (
        frame
        if isinstance(frame, UtilisationData)
        else prepare_utilisation(frame, tz=tz, every=every, shift_hours=shift_hours)
    )
    _apply(figs, data, base_height=height)
    return figs


class UtilisationView:
    """Operating hours per machine × day, fleet utilisation and an hour-of-day heatmap.

    >>> UtilisationView(window.main, tz="site")   # doctest: +SKIP

    Static figures by default; ``live=True`` draws into ``FigureWidget`` s updated in place
    and adds a "last record N s ago" line. The charts are stacked in a ``VBox`` rather than a
    ``Tab``: a figure in a hidden tab is laid out at zero width. ``data`` holds the frames drawn.
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
        live: bool = False,
    ) -> None:
        self.tz = tz
        self.every = every
        self.shift_hours = shift_hours
        self.fallback = fallback
        self.live = live
        self._height = height
        self._errors = ErrorBox()
        self._figs: dict[str, Any] = (
            {name: go.FigureWidget(fig) for name, fig in _base_figures(height).items()}
            if live
            else {}
        )
        self._out = ipywidgets.Output()
        self._status = ipywidgets.HTML()
        self._receipt = LiveStatus() if live else None
        shown = [self._figs[name] for name in _CHARTS] if live else [self._out]
        head = [self._status, *([self._receipt] if self._receipt is not None else [])]
        self.widget = ipywidgets.VBox([*head, *shown, self._errors.widget])
        self._data = prepare_utilisation(None, tz=tz, every=every)
        if frame is not None:
            self.update(frame)

    @property
    def data(self) -> UtilisationData:
        """The utilisation frames currently drawn."""
        return self._data

    @property
    def figure_widgets(self) -> dict[str, go.FigureWidget]:
        """The live ``FigureWidget`` s (empty unless ``live=True``)."""
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
        self._data = prepared
        if self._figs:
            _apply(self._figs, prepared, base_height=self._height)
        else:
            self._out.outputs = tuple(
                {"output_type": "display_data", "data": static_bundle(fig), "metadata": {}}
                for fig in self.figures().values()
            )
        if self._receipt is not None and prepared.frame is not None:
            self._receipt.update(prepared.frame)
        self._status.value = f"<span style='color:#444'>{prepared.summary}</span>"

    def show_error(self, error: BaseException, *, context: str = "") -> None:
        self._errors.show(error, context=context)

    def figures(self) -> dict[str, go.Figure]:
        """The current charts as static figures (nbviewer, GitHub, nbconvert, reports)."""
        return utilisation_figures(self._data, height=self._height)

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
