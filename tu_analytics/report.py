"""A static, self-contained HTML report: machine map, utilisation charts and a summary table.

The file inlines plotly.js (``include_plotlyjs=True``) and uses a map style that needs no tiles,
so it opens offline, attached to an e-mail or from a shared drive.
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import polars as pl

from tu_analytics.widgets._data import format_number, format_time
from tu_analytics.widgets.map import STATES, MapData, map_figure, positions_figure, prepare_map
from tu_analytics.widgets.utilisation import prepare_utilisation, utilisation_figures

from .widgets._data import FILE_WORKER_JS as _FILE_WORKER_JS

__all__ = ["write_report"]


# Swap the MapLibre map for the plain positions chart when the map has not started after
# ``fallback_delay_ms`` (a browser where neither a blob: nor a data: module worker may start; see
# positions_figure). If the map comes up late after all, it is shown again.
_MAP_FALLBACK_JS = """
<script>
(function () {
  var ready = false, swapped = false;
  function el(id) { return document.getElementById(id); }
  window.tuMapReady = function () {
    ready = true;
    if (!swapped) return;
    el("tu-map-fallback").style.display = "none";
    el("tu-map").style.display = "";
    window.dispatchEvent(new Event("resize"));
  };
  window.addEventListener("load", function () {
    setTimeout(function () {
      if (ready || !window.Plotly) return;
      swapped = true;
      el("tu-map").style.display = "none";
      el("tu-map-fallback").style.display = "";
      var fig = JSON.parse(el("tu-map-fallback-figure").textContent);
      window.Plotly.newPlot("tu-map-fallback-plot", fig.data, fig.layout, {responsive: true});
    }, %(delay_ms)d);
  });
})();
</script>
"""

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px; color: #222; }
h1 { font-size: 22px; margin-bottom: 4px; }
h2 { font-size: 17px; margin-top: 28px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
.meta, .note { color: #666; font-size: 13px; }
table.summary { border-collapse: collapse; font-size: 14px; margin-top: 8px; }
table.summary th { text-align: left; font-weight: 600; padding: 3px 16px 3px 0; color: #444; }
table.summary td { padding: 3px 0; }
"""


def _computed_summary(main: pl.DataFrame, shown: MapData, *, every: str) -> dict[str, str]:
    if main.is_empty() or "MachineId" not in main.columns:
        return {"records": format_number(main.height), "machines": "0"}
    out: dict[str, str] = {
        "records": format_number(main.height),
        "machines": format_number(main.get_column("MachineId").drop_nulls().n_unique()),
    }
    if "kafka_timestamp" in main.columns:
        received = main.get_column("kafka_timestamp")
        out["received from"] = format_time(received.min())
        out["received until"] = format_time(received.max())
    out["machines on the map"] = format_number(shown.machines.height)
    if shown.without_position:
        out["machines without a valid position"] = format_number(shown.without_position)
    states = shown.machines.get_column("state").value_counts()
    counts = dict(zip(states.get_column("state"), states.get_column("count"), strict=True))
    out["state (machines on the map)"] = ", ".join(
        f"{state}: {counts[state]}" for state in STATES if counts.get(state)
    )
    fleet = prepare_utilisation(main, every=every).fleet
    if fleet.height:
        bucket_hours = (
            pl.col("bucket_start").dt.offset_by(every) - pl.col("bucket_start")
        ).dt.total_milliseconds() / 3_600_000
        totals = fleet.select(
            pl.col("operating_hours").sum().alias("operating"),
            pl.col("idle_hours").sum().alias("idle"),
            (pl.col("machines_reporting") * bucket_hours).sum().alias("covered"),
        ).row(0, named=True)
        out["operating hours"] = format_number(totals["operating"], "h")
        out["idle hours"] = format_number(totals["idle"], "h")
        if totals["covered"]:
            share = 100 * totals["operating"] / totals["covered"]
            out["fleet utilisation"] = format_number(share, "% of machine-time reported")
    return out


def _map_section(shown: MapData, map_style: str | dict[str, Any], delay_ms: int) -> list[str]:
    machine_map = map_figure(shown, map_style=map_style)
    fallback = positions_figure(shown).to_json().replace("</", "<\\/")
    return [
        _MAP_FALLBACK_JS % {"delay_ms": delay_ms},
        '<div id="tu-map">',
        # The first figure carries plotly.js inline; the others reuse it.
        machine_map.to_html(
            full_html=False,
            include_plotlyjs=True,
            post_script="window.tuMapReady && window.tuMapReady();",
        ),
        "</div>",
        '<div id="tu-map-fallback" style="display:none">',
        '<div class="note">This browser could not start the map; the positions are drawn'
        " without a base map. Open the report through a web server, or in another browser, for"
        " the map.</div>",
        '<div id="tu-map-fallback-plot"></div>',
        f'<script type="application/json" id="tu-map-fallback-figure">{fallback}</script>',
        "</div>",
    ]


def _table(rows: Mapping[str, Any]) -> str:
    body = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
        for k, v in rows.items()
    )
    return f'<table class="summary">{body}</table>'


def write_report(
    main: pl.DataFrame,
    path: str | Path,
    *,
    title: str = "Trackunit fleet report",
    summary: Mapping[str, Any] | None = None,
    tz: str = "UTC",
    every: str = "1h",
    map_style: str | dict[str, Any] = "white-bg",
    now: datetime | None = None,
    stale_after: str | timedelta = "2h",
    fallback_delay_ms: int = 4000,
) -> Path:
    """Write a self-contained HTML report for a Machine Insights ``main`` frame; returns its path.

    ``summary`` adds caller rows (e.g. the window's topic and range) above the computed ones.
    ``now``/``stale_after`` decide the machine states (default: as of the newest record).
    Opened from disk (``file://``), where Chromium refuses MapLibre's blob: module worker, the
    page hands MapLibre its worker as a data: URL instead, so the map starts there too. Where
    the map still cannot start, the same markers are drawn on plain longitude/latitude axes
    after ``fallback_delay_ms``.
    """
    path = Path(path)
    shown = prepare_map(main, now=now, stale_after=stale_after)
    charts = utilisation_figures(main, tz=tz, every=every)
    rows = {**(summary or {}), **_computed_summary(main, shown, every=every)}
    generated = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(title)}</title><style>{_CSS}</style>",
        _FILE_WORKER_JS,
        "</head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f'<div class="meta">generated {generated} by tu-analytics</div>',
        "<h2>Summary</h2>",
        _table(rows),
        "<h2>Machines</h2>",
        *_map_section(shown, map_style, fallback_delay_ms),
    ]
    headings = {
        "daily": f"Operating and idle hours per day ({tz})",
        "fleet": "Fleet utilisation",
        "hour_of_day": f"Operating hours by hour of day ({tz})",
    }
    for name, fig in charts.items():
        parts += [
            f"<h2>{html.escape(headings[name])}</h2>",
            fig.to_html(full_html=False, include_plotlyjs=False),
        ]
    parts.append("</body></html>")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts), encoding="utf-8")
    return path
