"""A static, self-contained HTML report: activity, map, sites, machines, faults, utilisation.

The file inlines plotly.js once and draws the map on the shipped Natural Earth base layer (no
tiles, no WebGL), so it opens offline, attached to an e-mail or from a shared drive (also from
``file://``). Times are shown in local time (``tz``: an IANA zone, or ``"site"`` for each
machine's own zone); every value is formatted for people (thousands separators, units, "12 min
ago"), never as a Python repr.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import polars as pl

from tu_analytics.sites import machine_zones
from tu_analytics.utilisation import SITE_TZ, activity_summary
from tu_analytics.widgets._data import format_number
from tu_analytics.widgets.map import STATES, MapData, map_figure, prepare_map
from tu_analytics.widgets.utilisation import prepare_utilisation, utilisation_figures

from .widgets._data import FILE_WORKER_JS as _FILE_WORKER_JS

__all__ = ["format_ago", "format_local", "write_report"]

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 24px; color: #222; }
h1 { font-size: 22px; margin-bottom: 4px; }
h2 { font-size: 17px; margin-top: 28px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
.meta, .note { color: #666; font-size: 13px; }
.activity { font-size: 16px; margin: 10px 0; }
table { border-collapse: collapse; font-size: 13px; margin-top: 8px; }
th { text-align: left; font-weight: 600; padding: 3px 14px 3px 0; color: #444; }
td { padding: 3px 14px 3px 0; }
table.grid th { border-bottom: 1px solid #ccc; }
table.grid tr:nth-child(even) td { background: #f7f7f7; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.stale { color: #b35900; }
"""


def format_local(moment: object, zone: str = "UTC") -> str:
    """``Fri 27 Nov 16:05 CET`` for an aware datetime in ``zone``; "–" for nothing."""
    if not isinstance(moment, datetime):
        return "–" if moment is None else str(moment)
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return aware.astimezone(ZoneInfo(zone)).strftime("%a %d %b %H:%M %Z")


def format_ago(moment: object, now: datetime) -> str:
    """``"12 min ago"``, ``"3 h ago"``, ``"2 days ago"``; "–" for nothing."""
    if not isinstance(moment, datetime):
        return "–"
    seconds = max(0.0, (now - moment).total_seconds())
    if seconds < 120:
        return f"{seconds:.0f} s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min ago"
    if seconds < 172800:
        return f"{seconds / 3600:.0f} h ago"
    return f"{seconds / 86400:.0f} days ago"


def _human(value: object, zone: str) -> str:
    """A caller's summary value, formatted for people (no Python reprs)."""
    if isinstance(value, datetime):
        return format_local(value, zone)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, list | tuple | set):
        return ", ".join(_human(v, zone) for v in value) or "–"
    if isinstance(value, int | float) and not isinstance(value, bool):
        return format_number(value)
    return "–" if value is None else str(value)


def _page_zone(tz: str) -> str:
    return "UTC" if tz == SITE_TZ else tz


def _table(rows: Mapping[str, Any]) -> str:
    body = "".join(
        f"<tr><th>{html.escape(str(k))}</th><td>{html.escape(str(v))}</td></tr>"
        for k, v in rows.items()
    )
    return f'<table class="summary">{body}</table>'


def _grid(header: Sequence[str], rows: Iterable[Sequence[object]], numeric: set[int]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="num">{html.escape(str(v))}</td>'
            if i in numeric
            else f"<td>{html.escape(str(v))}</td>"
            for i, v in enumerate(row)
        )
        + "</tr>"
        for row in rows
    )
    return f'<table class="grid"><tr>{head}</tr>{body}</table>'


def _zones(main: pl.DataFrame, tz: str) -> dict[str, str]:
    if tz != SITE_TZ:
        return {}
    return dict(machine_zones(main).iter_rows())


def _machine_rows(
    shown: MapData, hours: pl.DataFrame, zones: Mapping[str, str], tz: str, now: datetime
) -> pl.DataFrame:
    """One row per machine on the map, for the machines table."""
    m = shown.machines.join(hours, on="MachineId", how="left").sort("site_text", "label")
    out = []
    for r in m.iter_rows(named=True):
        zone = zones.get(r["MachineId"], "UTC") if tz == SITE_TZ else tz
        seen = r.get("last_seen")
        out.append(
            {
                "machine": r["label"],
                "make / model": f"{r['OEMName']} {r['Model']}",
                "site": r["site_text"],
                "state": r["state"],
                "last seen": format_local(seen, zone),
                "staleness": format_ago(seen, now),
                "fuel": r["fuel_text"],
                "hour meter": r["hours_text"],
                "hours in window": format_number(r.get("window_hours"), "h"),
            }
        )
    return pl.DataFrame(out) if out else pl.DataFrame()


def _site_rows(shown: MapData, hours: pl.DataFrame, page_zone: str) -> list[list[object]]:
    m = shown.machines.join(hours, on="MachineId", how="left")
    if m.is_empty():
        return []
    per_site = (
        m.group_by("site_text")
        .agg(
            pl.len().alias("machines"),
            *(pl.col("state").eq(s).sum().alias(s) for s in STATES),
            pl.col("window_hours").sum().alias("hours"),
            pl.col("last_seen").max().alias("last"),
        )
        .sort("site_text")
    )
    return [
        [
            r["site_text"],
            r["machines"],
            *(r[s] for s in STATES),
            format_number(r["hours"], "h"),
            format_local(r["last"], page_zone),
        ]
        for r in per_site.iter_rows(named=True)
    ]


def _fault_rows(faults: pl.DataFrame | None, labels: Mapping[str, str], zone: str) -> str:
    if faults is None or faults.is_empty() or "CodeIdentifier" not in faults.columns:
        return '<p class="note">No fault codes were reported in this data.</p>'
    f = faults.with_columns(
        *(
            pl.lit(None, pl.String).alias(c)
            for c in ("CodeDescription", "CodeSeverity")
            if c not in faults.columns
        ),
        *(
            pl.lit(None, pl.Datetime("ms", "UTC")).alias(c)
            for c in ("datetime", "datetimeCleared")
            if c not in faults.columns
        ),
    )
    per_code = (
        f.group_by("CodeIdentifier")
        .agg(
            pl.col("CodeDescription").drop_nulls().first(),
            pl.col("CodeSeverity").drop_nulls().first(),
            pl.len().alias("reports"),
            pl.col("MachineId").unique().sort().alias("machines"),
            pl.col("datetime").max().alias("last"),
            pl.col("datetimeCleared").is_null().any().alias("open"),
        )
        .sort("reports", descending=True)
    )
    rows = [
        [
            r["CodeIdentifier"],
            r["CodeDescription"] or "–",
            r["CodeSeverity"] or "–",
            r["reports"],
            ", ".join(labels.get(mid, mid) for mid in r["machines"]),
            format_local(r["last"], zone),
            "yes" if r["open"] else "cleared",
        ]
        for r in per_code.iter_rows(named=True)
    ]
    header = ["code", "description", "severity", "reports", "machines", "last reported", "open"]
    return _grid(header, rows, {3})


def _window_hours(main: pl.DataFrame) -> pl.DataFrame:
    daily = prepare_utilisation(main).daily
    if daily.is_empty():
        return pl.DataFrame(schema={"MachineId": pl.String, "window_hours": pl.Float64})
    return daily.group_by("MachineId").agg(pl.col("operating_hours").sum().alias("window_hours"))


def _freshness(main: pl.DataFrame, now: datetime, zone: str) -> str:
    if main.is_empty() or "kafka_timestamp" not in main.columns:
        return "no records"
    newest = main.get_column("kafka_timestamp").max()
    return f"newest record received {format_ago(newest, now)} ({format_local(newest, zone)})"


def _summary_rows(
    main: pl.DataFrame,
    shown: MapData,
    summary: Mapping[str, Any] | None,
    *,
    tz: str,
    written: datetime,
) -> dict[str, str]:
    zone = _page_zone(tz)
    ids = main.get_column("MachineId").drop_nulls() if "MachineId" in main.columns else None
    rows = {
        **{k: _human(v, zone) for k, v in (summary or {}).items()},
        "records": format_number(main.height),
        "machines": format_number(ids.n_unique() if ids is not None else 0),
        "machines on the map": format_number(shown.machines.height),
        "freshness": _freshness(main, written, zone),
        "local time": "each machine's site" if tz == SITE_TZ else tz,
    }
    if shown.without_position:
        rows["machines without a valid position"] = format_number(shown.without_position)
    return rows


def write_report(
    main: pl.DataFrame,
    path: str | Path,
    *,
    title: str = "Trackunit fleet report",
    summary: Mapping[str, Any] | None = None,
    faults: pl.DataFrame | None = None,
    tz: str = SITE_TZ,
    every: str = "1h",
    map_style: str | dict[str, Any] = "base",
    now: datetime | None = None,
    stale_after: str | timedelta = "2h",
) -> Path:
    """Write a self-contained HTML report for a Machine Insights ``main`` frame; returns its path.

    ``summary`` adds caller rows (e.g. the window's topic and range) above the computed ones;
    ``faults`` is the window's ``fault_codes`` long frame. ``tz`` is the local time of the page:
    an IANA zone, or ``"site"`` (the default): each machine's own zone for its rows and charts,
    UTC for fleet-wide times. ``now``/``stale_after`` decide the machine states (default: as of
    the newest record); staleness is counted from the wall clock at writing.
    """
    path = Path(path)
    written = datetime.now(UTC)
    zone = _page_zone(tz)
    shown = prepare_map(main, now=now, stale_after=stale_after)
    hours = _window_hours(main)
    machines = _machine_rows(shown, hours, _zones(main, tz), tz, written)
    labels = dict(shown.machines.select("MachineId", "label").iter_rows())
    charts = utilisation_figures(prepare_utilisation(main, tz=tz, every=every, now=now), height=380)
    activity = activity_summary(main, now=now, tz=tz) if main.width else "no data"
    parts = [
        _head(title, written, zone, activity),
        "<h2>Summary</h2>",
        _table(_summary_rows(main, shown, summary, tz=tz, written=written)),
        "<h2>Machines on the map</h2>",
        map_figure(shown, map_style=map_style).to_html(full_html=False, include_plotlyjs=True),
        "<h2>Sites</h2>",
        _grid(
            ["site", "machines", *STATES, "operating hours in window", "last seen"],
            _site_rows(shown, hours, zone),
            {1, 2, 3, 4, 5, 6},
        ),
        "<h2>Machines</h2>",
        _grid(list(machines.columns), machines.iter_rows(), {6, 7, 8})
        if machines.height
        else '<p class="note">No machine with a position in this data.</p>',
        "<h2>Faults</h2>",
        _fault_rows(faults, labels, zone),
        "<h2>Utilisation</h2>",
        *(fig.to_html(full_html=False, include_plotlyjs=False) for fig in charts.values()),
        "</body></html>",
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(parts), encoding="utf-8")
    return path


def _head(title: str, written: datetime, zone: str, activity: str) -> str:
    """The page up to its first section: title, when it was written, the activity sentence."""
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            f"<title>{html.escape(title)}</title><style>{_CSS}</style>",
            _FILE_WORKER_JS,
            "</head><body>",
            f"<h1>{html.escape(title)}</h1>",
            f'<div class="meta">generated {format_local(written, zone)} by tu-analytics</div>',
            f'<div class="activity">{html.escape(activity)}</div>',
        ]
    )
