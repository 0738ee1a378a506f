"""The static HTML report."""

from __future__ import annotations

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
    return re.findall(r"Plotly\.newPlot\(", page)


def grid(page: str, heading: str) -> list[dict[str, str]]:
    """The rows of the table under ``<h2>heading</h2>`` as dicts."""
    part = page.split(f"<h2>{heading}</h2>", 1)[1].split("<h2>", 1)[0]
    header = re.findall(r"<th>(.*?)</th>", part)
    rows = re.findall(r"<tr>((?:<td[^>]*>.*?</td>)+)</tr>", part)
    return [dict(zip(header, re.findall(r"<td[^>]*>(.*?)</td>", r), strict=True)) for r in rows]


def test_report_is_self_contained_with_map_and_charts(tmp_path: Path) -> None:
    out = write_report(small_main(), tmp_path / "sub" / "fleet.html", title="Fleet <today>")
    assert out == tmp_path / "sub" / "fleet.html"
    page = out.read_text(encoding="utf-8")
    # plotly.js is inlined once, so the file works offline; nothing is fetched from a CDN.
    assert page.count("plotly.js v") == 1
    assert not re.search(r"<script[^>]+src=", page)
    assert len(plots(page)) == 4  # the map and three utilisation charts
    assert '"fill":"toself"' in page  # the base layer: land as SVG, no WebGL or tiles
    assert '"name":"land"' in page
    assert "<title>Fleet &lt;today&gt;</title>" in page
    assert "Operating hours by hour of day" in page
    assert "sum of the operating-hour counter" in page  # the aggregation is stated


def test_report_summary_rows_are_for_people(tmp_path: Path) -> None:
    page = write_report(
        small_main(),
        tmp_path / "r.html",
        tz="Europe/Copenhagen",
        summary={
            "topic": "acme.insights",
            "note": "<b>not html</b>",
            "schema_ids": [4, 7],
            "first": T0,
            "records": 12345,
        },
    ).read_text(encoding="utf-8")
    table = re.search(r'<table class="summary">(.*?)</table>', page, re.S)
    assert table is not None
    rows = dict(re.findall(r"<tr><th>(.*?)</th><td>(.*?)</td></tr>", table.group(1)))
    assert list(rows)[:2] == ["topic", "note"]  # the caller's rows first
    assert rows["note"] == "&lt;b&gt;not html&lt;/b&gt;"
    assert rows["schema_ids"] == "4, 7"  # not a Python repr
    assert rows["first"] == "Mon 06 May 08:00 CEST"
    assert rows["machines"] == "3"
    assert rows["machines on the map"] == "2"
    assert rows["machines without a valid position"] == "1"
    assert rows["freshness"].startswith("newest record received ")
    assert "Mon 06 May 10:45 CEST" in rows["freshness"]


def test_report_has_sites_machines_and_faults(tmp_path: Path) -> None:
    faults = pl.DataFrame(
        {
            "MachineId": ["A", "A", "B"],
            "CodeIdentifier": ["E12", "E12", "P0101"],
            "CodeDescription": ["Hydraulic oil hot", None, "MAF sensor"],
            "CodeSeverity": ["High", None, "Low"],
            "datetime": [T0, T0 + timedelta(hours=1), T0],
            "datetimeCleared": [T0 + timedelta(minutes=5), None, T0 + timedelta(minutes=9)],
        }
    ).with_columns(pl.col("datetime", "datetimeCleared").cast(TIME))
    page = write_report(small_main(), tmp_path / "r.html", faults=faults).read_text("utf-8")
    sites = grid(page, "Sites")
    assert [(r["site"], r["machines"]) for r in sites] == [("Aarhus", "2")]
    machines = {r["machine"]: r for r in grid(page, "Machines")}
    assert set(machines) == {"EQ-A", "EQ-B"}
    assert machines["EQ-A"]["last seen"] == "Mon 06 May 10:45 CEST"  # the site's local time
    assert machines["EQ-A"]["staleness"].endswith("days ago")
    assert machines["EQ-A"]["hour meter"] == "102.8 h"
    assert machines["EQ-A"]["hours in window"] == "2.8 h"
    found = {r["code"]: r for r in grid(page, "Faults")}
    assert found["E12"]["reports"] == "2"
    assert found["E12"]["machines"] == "EQ-A"
    assert found["E12"]["open"] == "yes"
    assert found["P0101"]["open"] == "cleared"


def test_report_of_an_empty_frame(tmp_path: Path) -> None:
    page = write_report(pl.DataFrame(), tmp_path / "empty.html").read_text(encoding="utf-8")
    assert len(plots(page)) == 4
    assert "<th>machines</th><td>0</td>" in page
    assert "No fault codes were reported" in page
