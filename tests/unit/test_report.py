"""The static HTML report."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import polars as pl

from tu_analytics.report import write_report

T0 = datetime(2024, 5, 6, 6, 0, tzinfo=UTC)
TIME = pl.Datetime("ms", "UTC")


def small_main() -> pl.DataFrame:
    """Two machines with positions, one at (0, 0), hour counters every 15 minutes."""
    rows = []
    for k, (mid, lat, lon) in enumerate([("A", 56.1, 10.2), ("B", 55.4, 10.4), ("Z", 0.0, 0.0)]):
        for i in range(12):
            t = T0 + timedelta(minutes=15 * i)
            rows.append(
                {
                    "kafka_timestamp": t,
                    "MachineId": mid,
                    "EquipmentID": f"EQ-{mid}",
                    "OEMName": "CAT",
                    "Model": "320",
                    "City": "Aarhus",
                    "Latitude": lat,
                    "Longitude": lon,
                    "Location_datetime": t,
                    "CumulativeOperatingHours": 100.0 + k + i * 0.25,
                    "CumulativeOperatingHours_datetime": t,
                    "CumulativeIdleHours": 10.0,
                    "CumulativeIdleHours_datetime": t,
                }
            )
    return pl.DataFrame(rows).with_columns(
        pl.col(
            "kafka_timestamp",
            "Location_datetime",
            "CumulativeOperatingHours_datetime",
            "CumulativeIdleHours_datetime",
        ).cast(TIME)
    )


def plots(page: str) -> list[str]:
    # plotly's own calls; the fallback's ``window.Plotly.newPlot`` only runs when the map fails.
    return re.findall(r"(?<!window\.)Plotly\.newPlot\(", page)


def test_report_is_self_contained_with_map_and_charts(tmp_path: Path) -> None:
    out = write_report(small_main(), tmp_path / "sub" / "fleet.html", title="Fleet <today>")
    assert out == tmp_path / "sub" / "fleet.html"
    page = out.read_text(encoding="utf-8")
    # plotly.js is inlined once, so the file works offline; nothing is fetched from a CDN.
    assert "plotly.js v" in page
    assert len(page) > 3_000_000
    assert not re.search(r"<script[^>]+src=", page)
    assert len(plots(page)) == 4  # the map and three utilisation charts
    assert '"type":"scattermap"' in page
    assert '"style":"white-bg"' in page
    assert "<title>Fleet &lt;today&gt;</title>" in page
    assert "Operating hours by hour of day" in page


def test_report_map_has_the_positions_and_a_file_url_fallback(tmp_path: Path) -> None:
    page = write_report(small_main(), tmp_path / "r.html").read_text(encoding="utf-8")
    fallback = re.search(
        r'<script type="application/json" id="tu-map-fallback-figure">(.*?)</script>', page, re.S
    )
    assert fallback is not None
    figure = json.loads(fallback.group(1).replace("<\\/", "</"))
    drawn = [t for t in figure["data"] if t.get("mode") == "markers" and t.get("visible", True)]
    ids = sorted(row[3] for t in drawn for row in t.get("customdata", []))
    assert ids == ["A", "B"]  # Z only has (0, 0) fixes
    assert "window.tuMapReady" in page
    assert 'id="tu-map"' in page


def test_report_summary_rows(tmp_path: Path) -> None:
    page = write_report(
        small_main(),
        tmp_path / "r.html",
        summary={"topic": "acme.insights", "note": "<b>not html</b>"},
    ).read_text(encoding="utf-8")
    table = re.search(r'<table class="summary">(.*?)</table>', page, re.S)
    assert table is not None
    rows = dict(re.findall(r"<tr><th>(.*?)</th><td>(.*?)</td></tr>", table.group(1)))
    assert list(rows)[:2] == ["topic", "note"]  # the caller's rows first
    assert rows["note"] == "&lt;b&gt;not html&lt;/b&gt;"
    assert rows["records"] == "36"
    assert rows["machines"] == "3"
    assert rows["machines on the map"] == "2"
    assert rows["machines without a valid position"] == "1"
    assert rows["received from"].startswith("2024-05-06 06:00:00")
    # Every machine runs all the time, but the last hour is only covered up to 08:45.
    assert rows["fleet utilisation"] == "91.7 % of machine-time reported"


def test_report_of_an_empty_frame(tmp_path: Path) -> None:
    page = write_report(pl.DataFrame(), tmp_path / "empty.html").read_text(encoding="utf-8")
    assert len(plots(page)) == 4
    assert "<th>machines</th><td>0</td>" in page
