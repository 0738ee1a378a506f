"""Frame preparation and display plumbing shared by the widgets (pure, no I/O).

Widgets receive Machine Insights ``main`` frames (docs/frames.md) from a window, a snapshot or
the live tail. Those frames may be empty, lack optional columns (a hand-made or projected frame),
or come from different schema versions, so every helper here tolerates missing columns.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import ipywidgets
import plotly.graph_objects as go
import polars as pl

__all__ = [
    "IDENTITY",
    "TIME",
    "empty_note",
    "fit_view",
    "format_number",
    "format_time",
    "last_values",
    "machine_labels",
    "numeric_insights",
    "site_column",
    "static_bundle",
    "valid_positions",
    "view_bundle",
]

TIME = pl.Datetime("ms", "UTC")
IDENTITY: tuple[str, ...] = ("MachineId", "EquipmentID", "OEMName", "Model")

# Numeric columns that are not insights: never offered as a colouring.
_NOT_INSIGHTS = frozenset(
    {
        "partition",
        "offset",
        "schema_id",
        "UnitId",
        "Latitude",
        "Longitude",
        "Altitude",
        "AccuracyRadius",
    }
)


def valid_positions(frame: pl.DataFrame) -> pl.DataFrame:
    """Rows with a drawable position: not null/NaN, within range, and not (0, 0).

    Trackunit sends latitude = longitude = 0 with an altitude-only fix; drawing it would put
    machines at "null island" in the Gulf of Guinea.
    """
    if "Latitude" not in frame.columns or "Longitude" not in frame.columns:
        return frame.clear()
    lat, lon = pl.col("Latitude").cast(pl.Float64), pl.col("Longitude").cast(pl.Float64)
    return frame.filter(
        lat.is_not_null()
        & lon.is_not_null()
        & lat.is_finite()
        & lon.is_finite()
        & lat.is_between(-90, 90)
        & lon.is_between(-180, 180)
        & ~((lat == 0) & (lon == 0))
    )


def site_column(frame: pl.DataFrame) -> str | None:
    """The column that names a machine's site: a ``site``-like column if any, else ``City``."""
    for name in frame.columns:
        if name.lower() in {"site", "sitename", "site_name", "siteid", "site_id"}:
            return name
    return "City" if "City" in frame.columns else None


def numeric_insights(frame: pl.DataFrame) -> list[str]:
    """Numeric insight columns with at least one value: the choices for a continuous colouring."""
    candidates = [
        name
        for name, dtype in frame.schema.items()
        if dtype.is_numeric() and name not in _NOT_INSIGHTS
    ]
    if not candidates or frame.is_empty():
        return []
    counts = frame.select(pl.col(candidates).count()).row(0)
    return sorted(name for name, n in zip(candidates, counts, strict=True) if n)


def last_values(frame: pl.DataFrame, columns: Iterable[str]) -> pl.DataFrame:
    """Per ``MachineId``, the newest non-null value of each column.

    "Newest" is by the column's own measurement clock ``<column>_datetime`` when the frame has
    it, else by receipt order. Absent columns come back as nulls.
    """
    wanted = [c for c in dict.fromkeys(columns) if c != "MachineId"]
    if "MachineId" not in frame.columns or frame.is_empty():
        return pl.DataFrame({"MachineId": pl.Series([], dtype=pl.String)}).with_columns(
            [pl.lit(None).alias(c) for c in wanted]
        )
    order = "kafka_timestamp" if "kafka_timestamp" in frame.columns else None
    base = frame.with_row_index("__row")
    aggs: list[pl.Expr] = []
    for c in wanted:
        if c not in base.columns:
            aggs.append(pl.lit(None).alias(c))
            continue
        keys = [pl.col("__row")]
        if order is not None:
            keys.insert(0, pl.col(order))
        if f"{c}_datetime" in base.columns:
            keys.insert(0, pl.col(f"{c}_datetime"))
        aggs.append(pl.col(c).sort_by(keys, nulls_last=False).drop_nulls().last().alias(c))
    return (
        base.filter(pl.col("MachineId").is_not_null())
        .group_by("MachineId", maintain_order=True)
        .agg(aggs)
    )


def machine_labels(frame: pl.DataFrame) -> pl.DataFrame:
    """``MachineId`` → a unique display ``label``: the customer's ``EquipmentID`` when set.

    Machines without an EquipmentID show their id; an EquipmentID used by several machines gets
    the id appended, so charts never merge two machines.
    """
    ident = last_values(frame, ["EquipmentID"])
    name = pl.col("EquipmentID").cast(pl.String).replace("", None)
    clash = pl.len().over(name) > 1
    return ident.select(
        "MachineId",
        pl.when(name.is_null())
        .then(pl.col("MachineId"))
        .when(clash)
        .then(pl.format("{} ({})", name, pl.col("MachineId")))
        .otherwise(name)
        .alias("label"),
    )


def format_number(value: object, unit: str = "", digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int | float):
        text = f"{value:,.{digits}f}" if isinstance(value, float) else f"{value:,}"
        return f"{text} {unit}".strip()
    return str(value)


def format_time(value: object) -> str:
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S %Z").strip()
    return "–" if value is None else str(value)


def fit_view(
    lats: Sequence[float], lons: Sequence[float], *, width: int = 900, height: int = 600
) -> tuple[dict[str, float], float]:
    """A MapLibre centre and zoom that show every point, with some margin.

    At zoom ``z`` the world is ``512 * 2**z`` pixels wide; latitude is stretched by ``1/cos``.
    """
    if not lats:
        return {"lat": 20.0, "lon": 0.0}, 1.0
    lat0, lat1, lon0, lon1 = min(lats), max(lats), min(lons), max(lons)
    centre = {"lat": (lat0 + lat1) / 2, "lon": (lon0 + lon1) / 2}
    pad = 1.4
    lon_span = max(lon1 - lon0, 1e-9) * pad
    lat_span = max(lat1 - lat0, 1e-9) * pad
    coslat = max(math.cos(math.radians(centre["lat"])), 0.05)
    z_lon = math.log2(width * 360 / (512 * lon_span))
    z_lat = math.log2(height * 360 * coslat / (512 * lat_span))
    return centre, float(min(max(min(z_lon, z_lat), 0.5), 14.0))


def empty_note(fig: Any, text: str | None) -> None:
    """Set (``text``) or clear (None) the note a chart shows in its middle when it has nothing
    to draw; other annotations are kept. One look for every widget's empty state."""
    notes = [a for a in fig.layout.annotations if a.name != "empty"]
    if text:
        notes.append(
            go.layout.Annotation(
                name="empty",
                text=text,
                xref="paper",
                yref="paper",
                x=0.5,
                y=0.5,
                showarrow=False,
                font={"size": 14, "color": "#444"},
                bgcolor="rgba(255,255,255,0.9)",
            )
        )
    fig.layout.annotations = notes


def static_bundle(fig: go.Figure) -> dict[str, Any]:
    """A figure's mime bundle without plotly.js: JupyterLab's plotly renderer draws the JSON.

    So a notebook stores each figure's data only, never a copy of plotly.js per figure.
    """
    # Through plotly's own encoder: the kernel's JSON cannot serialise numpy arrays.
    return {
        "application/vnd.plotly.v1+json": json.loads(fig.to_json()),
        "text/plain": f"<plotly figure: {len(fig.data)} traces>",
    }


def view_bundle(
    container: ipywidgets.Widget,
    figure_widgets: Sequence[go.FigureWidget],
    static: Sequence[go.Figure],
    *,
    fallback: bool = True,
) -> dict[str, Any]:
    """The mime bundle of a view: the live widget, plus static fallbacks for frontends without
    widgets.

    Before the container is shown its figure widgets re-send their full state. A FigureWidget
    that is only shown inside a Box (never displayed itself) otherwise renders with stale or
    missing data in plotly >= 6 (plotly.py #4998: ``FigureWidget._repr_mimebundle_`` is where
    the figure syncs its state, and a Box never calls it).
    """
    for fig in figure_widgets:
        fig._repr_mimebundle_()
    bundle: dict[str, Any] = dict(container._repr_mimebundle_() or {})
    if fallback and static:
        # Jupyter frontends rank the widget view first; nbviewer-like renderers and frontends
        # without a widget manager pick the plotly JSON or the HTML (plotly.js from its CDN).
        if len(static) == 1:
            # Through plotly's own encoder: the kernel's JSON cannot serialise numpy arrays.
            bundle["application/vnd.plotly.v1+json"] = json.loads(static[0].to_json())
        bundle["text/html"] = "".join(
            fig.to_html(full_html=False, include_plotlyjs="cdn" if i == 0 else False)
            for i, fig in enumerate(static)
        )
    return bundle


# MapLibre (inside plotly.js) starts its worker from a blob: URL as an ES module worker. In a page
# opened from file:// the page's origin is opaque ("null") and Chromium refuses module workers
# from blob:null URLs (the worker fails to load, silently), so the map never starts (plotly.py
# #5474); a module worker from a data: URL does start there. So, on file:// pages only, script
# blobs built from strings are handed out as data: URLs: plotly's inlined worker code, and the
# `import "<worker url>"` shim MapLibre wraps around it. It must run before plotly.js.
FILE_WORKER_JS = """
<script>
(function () {
  if (location.protocol !== "file:" || !window.Blob || !window.URL) return;
  var NativeBlob = window.Blob, createObjectURL = URL.createObjectURL, scripts = new WeakMap();
  function TuBlob(parts, options) {
    var blob = new NativeBlob(parts, options);
    if (options && /javascript|ecmascript/i.test(options.type || "") && Array.isArray(parts)
        && parts.every(function (p) { return typeof p === "string"; })) {
      scripts.set(blob, parts.join(""));
    }
    return blob;
  }
  TuBlob.prototype = NativeBlob.prototype;
  window.Blob = TuBlob;
  URL.createObjectURL = function (obj) {
    var text = scripts.get(obj);
    if (text === undefined) return createObjectURL.call(URL, obj);
    return "data:text/javascript;charset=utf-8," + encodeURIComponent(text);
  };
})();
</script>
"""
