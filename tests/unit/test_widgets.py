"""The machine map, the utilisation view and their shared plumbing, on constructed frames."""

from __future__ import annotations

import ast
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import ipywidgets
import numpy as np
import plotly.graph_objects as go
import polars as pl
import pytest

import tu_analytics.widgets as widgets
from tu_analytics import utilisation
from tu_analytics.widgets import MachineMap, UtilisationView, map_figure, positions_figure
from tu_analytics.widgets._data import fit_view, last_values, machine_labels, valid_positions
from tu_analytics.widgets._errors import ErrorBox
from tu_analytics.widgets.map import STATES, MapOptions, prepare_map
from tu_analytics.widgets.status import format_rate, receipt

T0 = datetime(2024, 5, 6, 6, 0, tzinfo=UTC)
TIME = pl.Datetime("ms", "UTC")
CITY = {"Aarhus": (56.15, 10.2), "Odense": (55.4, 10.38), "Vejle": (55.7, 9.53)}
# id: EquipmentID, OEM, Model, City, activity, positions
MACHINES: dict[str, tuple[str, str, str, str, str, str]] = {
    "M1": ("EX-01", "CAT", "320", "Aarhus", "operating", "moving"),
    "M2": ("WL-02", "Volvo", "L60H", "Odense", "idle", "fixed"),
    "M3": ("GEN-3", "Atlas Copco", "QAS 60", "Aarhus", "operating", "zero"),
    "M4": ("LT-4", "JLG", "450AJ", "Vejle", "operating", "null"),
    "M5": ("EX-05", "CAT", "320", "Aarhus", "off", "fixed"),
}
SCHEMA: dict[str, Any] = {
    "partition": pl.Int32,
    "offset": pl.Int64,
    "kafka_timestamp": TIME,
    "schema_id": pl.Int32,
    "MachineId": pl.String,
    "EquipmentID": pl.String,
    "OEMName": pl.String,
    "Model": pl.String,
    "City": pl.String,
    "Latitude": pl.Float64,
    "Longitude": pl.Float64,
    "Location_datetime": TIME,
    "CumulativeOperatingHours": pl.Float64,
    "CumulativeOperatingHours_datetime": TIME,
    "CumulativeIdleHours": pl.Float64,
    "CumulativeIdleHours_datetime": TIME,
    "FuelLevel": pl.Float64,
    "FuelLevel_datetime": TIME,
}


def make_main(steps: int = 18, every_min: int = 10, start: datetime = T0) -> pl.DataFrame:
    """Five machines reporting every ``every_min`` minutes.

    M1 operates and moves, then sends an altitude-only (0, 0) fix last; M2 idles; M3 only ever
    has (0, 0); M4 has no position; M5 is off. M5 never reports FuelLevel.
    """
    rows: list[dict[str, Any]] = []
    offset = 0
    for mid, (eq, oem, model, city, mode, pos) in MACHINES.items():
        lat0, lon0 = CITY[city]
        operating, idle = 1000.0, 200.0
        for i in range(steps):
            t = start + timedelta(minutes=every_min * i)
            if mode in ("operating", "idle"):
                operating += every_min / 60
            if mode == "idle":
                idle += every_min / 60
            lat: float | None
            lon: float | None
            if pos == "moving":
                lat, lon = (0.0, 0.0) if i == steps - 1 else (lat0 + 0.001 * i, lon0 + 0.002 * i)
            elif pos == "fixed":
                lat, lon = lat0, lon0
            elif pos == "zero":
                lat, lon = 0.0, 0.0
            else:
                lat, lon = None, None
            rows.append(
                {
                    "partition": 0,
                    "offset": offset,
                    "kafka_timestamp": t + timedelta(seconds=5),
                    "schema_id": 1,
                    "MachineId": mid,
                    "EquipmentID": eq,
                    "OEMName": oem,
                    "Model": model,
                    "City": city,
                    "Latitude": lat,
                    "Longitude": lon,
                    "Location_datetime": t,
                    "CumulativeOperatingHours": operating,
                    "CumulativeOperatingHours_datetime": t,
                    "CumulativeIdleHours": idle,
                    "CumulativeIdleHours_datetime": t,
                    "FuelLevel": None if mid == "M5" else 80.0 - i,
                    "FuelLevel_datetime": None if mid == "M5" else t,
                }
            )
            offset += 1
    return pl.DataFrame(rows, schema=SCHEMA).sort("kafka_timestamp")


@pytest.fixture(scope="module")
def main() -> pl.DataFrame:
    return make_main()


def y_to_lat(y: float) -> float:
    """The inverse of the map's Web Mercator y (tu_analytics.widgets._basemap.project)."""
    return float(np.degrees(2 * np.arctan(np.exp(np.radians(y))) - np.pi / 2))


def markers(fig: Any) -> dict[str, tuple[float, float, str]]:
    """MachineId -> (exact lat, lon from the hover, state) over the visible machine markers.

    Machines at one site are drawn on a ring around it; hover keeps the exact position.
    """
    if isinstance(fig, MachineMap):
        fig = fig.figure_widget if fig.figure_widget is not None else fig.figure()
    out: dict[str, tuple[float, float, str]] = {}
    for trace in fig.data:
        if trace.mode != "markers" or trace.visible is False or trace.customdata is None:
            continue
        for row in np.asarray(trace.customdata):
            assert row[3] not in out
            lat, lon = (float(v) for v in str(row[10]).split(", "))
            out[str(row[3])] = (lat, lon, trace.name.split(" (")[0])
    return out


# -- frame helpers --------------------------------------------------------------------------------


def test_valid_positions_excludes_null_island_and_nulls(main: pl.DataFrame) -> None:
    valid = valid_positions(main)
    assert set(valid.get_column("MachineId")) == {"M1", "M2", "M5"}
    assert valid.filter((pl.col("Latitude") == 0) & (pl.col("Longitude") == 0)).height == 0
    odd = pl.DataFrame(
        {
            "MachineId": ["a", "b", "c", "d", "e"],
            "Latitude": [float("nan"), 91.0, 0.0, 0.0, 1.0],
            "Longitude": [1.0, 1.0, 0.0, 5.0, 0.0],
        }
    )
    assert valid_positions(odd).get_column("MachineId").to_list() == ["d", "e"]
    assert valid_positions(pl.DataFrame({"MachineId": ["a"]})).height == 0


def test_last_values_use_each_columns_own_clock() -> None:
    frame = pl.DataFrame(
        {
            "MachineId": ["A", "A", "A"],
            "kafka_timestamp": pl.Series([T0, T0 + timedelta(hours=2), T0], dtype=TIME),
            "FuelLevel": [50.0, 40.0, None],
            "FuelLevel_datetime": pl.Series(
                [T0 + timedelta(hours=3), T0 + timedelta(hours=1), None], dtype=TIME
            ),
        }
    )
    got = last_values(frame, ["FuelLevel", "Missing"])
    assert got.rows() == [("A", 50.0, None)]  # measured last, although received first


def test_machine_labels_are_unique() -> None:
    frame = pl.DataFrame({"MachineId": ["a", "b", "c", "d"], "EquipmentID": ["X", "X", None, "Y"]})
    labels = dict(machine_labels(frame).iter_rows())
    assert labels == {"a": "X (a)", "b": "X (b)", "c": "c", "d": "Y"}


def test_fit_view_contains_the_points() -> None:
    centre, zoom = fit_view([55.4, 56.2], [10.2, 10.4])
    assert centre == pytest.approx({"lat": 55.8, "lon": 10.3})
    assert 5 < zoom < 10
    _, single = fit_view([56.0], [10.0])
    assert single == 14.0
    assert fit_view([], []) == ({"lat": 20.0, "lon": 0.0}, 1.0)


# -- the map ---------------------------------------------------------------------------------


def test_map_draws_exactly_the_machines_with_valid_positions(main: pl.DataFrame) -> None:
    m = MachineMap(main)
    got = markers(m)
    assert set(got) == {"M1", "M2", "M5"}
    # M1's last record is an altitude-only (0, 0) fix: its previous real position is shown.
    assert got["M1"][:2] == pytest.approx((56.15 + 0.001 * 16, 10.2 + 0.002 * 16))
    assert got["M2"][:2] == pytest.approx(CITY["Odense"])
    assert all(lat != 0 or lon != 0 for lat, lon, _ in got.values())
    assert m.data.without_position == 2
    assert "2 without a position" in m._status.value


def test_map_colours_by_state(main: pl.DataFrame) -> None:
    m = MachineMap(main)
    got = markers(m)
    assert {k: v[2] for k, v in got.items()} == {"M1": "operating", "M2": "idle", "M5": "off"}
    expected = utilisation.machine_state(main).filter(pl.col("MachineId").is_in(["M1", "M2", "M5"]))
    assert dict(expected.select("MachineId", "state").iter_rows()) == {
        k: v[2] for k, v in got.items()
    }
    # Hover carries identity and last values.
    trace = next(t for t in m.figure().data if t.name == "operating (1)")
    row = list(trace.customdata[0])
    assert row[:5] == ["EX-01", "CAT", "320", "M1", "operating"]
    assert row[5] == "1003.0 h"  # CumulativeOperatingHours, last reading (18 × 10 min)
    assert row[6] == "63 %"
    assert row[7].startswith("2024-05-06 08:50:00")


def test_map_states_go_stale(main: pl.DataFrame) -> None:
    m = MachineMap(main, now=T0 + timedelta(days=2))
    assert {v[2] for v in markers(m).values()} == {"no recent data"}


def test_map_colours_by_an_insight(main: pl.DataFrame) -> None:
    m = MachineMap(main, color_by="FuelLevel")
    fig = m.figure()
    value = next(t for t in fig.data if t.name == "value")
    no_value = next(t for t in fig.data if t.name == "no FuelLevel")
    assert value.visible is True
    assert all(t.visible is False for t in fig.data if t.name.split(" (")[0] in STATES)
    ids = [row[3] for row in value.customdata]
    assert sorted(ids) == ["M1", "M2"]
    assert list(value.marker.color) == [63.0, 63.0]
    assert value.marker.colorbar.title.text == "FuelLevel"
    assert [row[3] for row in no_value.customdata] == ["M5"]  # never reported FuelLevel
    assert no_value.name == "no FuelLevel"
    assert "FuelLevel" in m._color_by.options


def test_map_filters(main: pl.DataFrame) -> None:
    m = MachineMap(main)
    m.set_options(oems=("CAT",))
    assert set(markers(m)) == {"M1", "M5"}
    m.set_options(oems=(), sites=("Odense",))
    assert set(markers(m)) == {"M2"}
    m.set_options(sites=(), models=("320",))
    assert set(markers(m)) == {"M1", "M5"}
    assert m._sites.description == "site"  # from City, by tu_analytics.sites
    assert list(m._oems.options) == ["Atlas Copco", "CAT", "JLG", "Volvo"]


def test_map_controls_drive_the_figure_like_a_user(main: pl.DataFrame) -> None:
    m = MachineMap(main)
    m._oems.value = ("Volvo",)  # what a click in the frontend does
    assert set(markers(m)) == {"M2"}
    m._color_by.value = "CumulativeOperatingHours"
    value = next(t for t in m.figure().data if t.name == "value")
    assert [row[3] for row in value.customdata] == ["M2"]
    m._oems.value = ()
    m._color_by.value = "state"
    assert set(markers(m)) == {"M1", "M2", "M5"}


def test_site_column_is_preferred_over_city(main: pl.DataFrame) -> None:
    with_site = main.with_columns(
        pl.when(pl.col("MachineId") == "M1")
        .then(pl.lit("North"))
        .otherwise(pl.lit("South"))
        .alias("Site")
    )
    m = MachineMap(with_site)
    assert m._sites.description == "Site"
    m.set_options(sites=("North",))
    assert set(markers(m)) == {"M1"}


def test_a_machine_named_only_by_coordinates_joins_the_named_site_beside_it() -> None:
    """In a short window a machine whose City came before the window is named by its position
    (57.0°N 9.9°E); on the map it joins the site a neighbour 300 m away names (one ring), while
    a machine 30 km away keeps its own name."""
    t0 = datetime(2026, 11, 29, 2, tzinfo=UTC)
    rows = [  # in receipt order: A3 reports before any City near it is known
        ("A3", 57.0460, 9.9230, None),  # ~300 m from A1
        ("F1", 57.3000, 9.9000, None),  # ~28 km north: not the same site
        ("A1", 57.0480, 9.9187, "Aalborg"),
        ("A2", 57.0500, 9.9200, "Aalborg"),
    ]
    frame = pl.DataFrame(
        [
            {"MachineId": m, "kafka_timestamp": t0 + timedelta(minutes=i), "Latitude": lat,
             "Longitude": lon, "City": city}
            for i, (m, lat, lon, city) in enumerate(rows)
        ]
    )
    data = prepare_map(frame)
    sites = dict(data.machines.select("MachineId", "site_text").iter_rows())
    assert sites["A3"] == "Aalborg"
    assert sites["F1"] not in ("Aalborg", "–")
    assert dict(data.sites.select("site", "machines").iter_rows())["Aalborg"] == 3
    assert "Aalborg" in data.choices["sites"]


def test_map_update_mutates_the_same_figure_widget(main: pl.DataFrame) -> None:
    m = MachineMap(main.filter(pl.col("MachineId") == "M2"), live=True)
    fig = m.figure_widget
    assert fig is not None
    n_traces = len(fig.data)
    assert set(markers(fig)) == {"M2"}
    m.update(main)
    assert m.figure_widget is fig
    assert m.widget.children[3] is fig
    assert len(fig.data) == n_traces
    assert set(markers(fig)) == {"M1", "M2", "M5"}


def test_map_refits_only_when_the_machines_change(main: pl.DataFrame) -> None:
    m = MachineMap(main.filter(pl.col("MachineId") == "M2"), live=True)
    fig = m.figure_widget
    assert fig is not None
    x0, x1 = fig.layout.xaxis.range
    assert x0 < CITY["Odense"][1] < x1
    fig.layout.xaxis.range = (0.0, 1.0)  # the user panned away
    m.update(main.filter(pl.col("MachineId") == "M2").with_columns(pl.lit(55.41).alias("Latitude")))
    assert fig.layout.xaxis.range == (0.0, 1.0)  # same machines: the view is left alone
    m.update(main)
    x0, x1 = fig.layout.xaxis.range
    assert all(x0 < lon < x1 for _, lon, _ in markers(m).values())


def test_map_trails(main: pl.DataFrame) -> None:
    m = MachineMap(main, trails=True, trail_points=5)
    trail = next(t for t in m.figure().data if t.name == "trails")
    assert trail.visible is True
    lats = [None if y is None else y_to_lat(y) for y in trail.y]
    # Only M1 moves; parked machines add no line. Five points, then the gap marker.
    assert lats[-1] is None
    assert len(lats) == 6
    assert lats[:-1] == pytest.approx([56.15 + 0.001 * i for i in range(12, 17)])
    m._trails.value = False
    assert next(t for t in m.figure().data if t.name == "trails").visible is False


def test_map_handles_empty_and_minimal_frames() -> None:
    m = MachineMap()
    assert markers(m) == {}
    m.update(pl.DataFrame())
    assert m.machines.height == 0
    minimal = pl.DataFrame(
        {"MachineId": ["a", "b"], "Latitude": [55.0, 0.0], "Longitude": [9.0, 0.0]}
    )
    m.update(minimal)
    assert set(markers(m)) == {"a"}
    assert m.errors.count == 0


def test_prepare_map_is_pure(main: pl.DataFrame) -> None:
    data = prepare_map(main, MapOptions(oems=("CAT",)))
    assert sorted(data.machines.get_column("MachineId")) == ["M1", "M5"]
    assert data.choices["oems"] == ["Atlas Copco", "CAT", "JLG", "Volvo"]
    assert "FuelLevel" in data.choices["insights"]
    assert "Latitude" not in data.choices["insights"]


def test_render_recomputes_when_controls_changed_meanwhile(main: pl.DataFrame) -> None:
    m = MachineMap()
    prepared = m.prepare(main)  # e.g. in the pump's worker thread
    m.set_options(oems=("Volvo",))  # the user clicks before the tick renders
    m.render(prepared)
    assert set(markers(m)) == {"M2"}
    with pytest.raises(TypeError):
        m.render("nonsense")


def test_static_figures_match_the_widget(main: pl.DataFrame) -> None:
    m = MachineMap(main, color_by="FuelLevel", live=True)
    static = m.figure()
    assert type(static) is go.Figure
    assert markers(static) == markers(m)
    assert static.layout.xaxis.range == m.figure_widget.layout.xaxis.range  # type: ignore[union-attr]
    standalone = map_figure(main, color_by="FuelLevel")
    assert markers(standalone) == markers(static)
    assert markers(positions_figure(prepare_map(main))) == markers(map_figure(main))


def test_figure_never_builds_a_widget(main: pl.DataFrame, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_widget(*args: object, **kwargs: object) -> None:
        raise AssertionError("a FigureWidget was built")

    monkeypatch.setattr(go, "FigureWidget", no_widget)
    m = MachineMap(main)
    assert m.figure_widget is None
    assert markers(m.figure())
    assert "application/vnd.plotly.v1+json" in m._repr_mimebundle_()


def test_map_style_is_configurable(main: pl.DataFrame) -> None:
    m = MachineMap(main, map_style="carto-positron", live=True)
    assert m.figure_widget is not None
    fig = m.figure()
    assert fig.layout.map.style == m.figure_widget.layout.map.style
    # A tile style says on the map that its tiles need the internet, and its style is inline:
    # the Natural Earth base layer under the provider's raster tiles, so a failed tile load
    # still leaves land, borders and markers.
    assert "internet" in fig.layout.annotations[0].text
    style = fig.layout.map.style
    assert [layer["id"] for layer in style["layers"]] == [
        "water",
        "land",
        "coast",
        "borders",
    ]
    (tiles,) = fig.layout.map.layers
    assert tiles.sourcetype == "raster"
    assert "cartocdn" in tiles.source[0]
    assert tiles.below == "traces"
    assert len(style["sources"]["land"]["data"]["features"]) > 50
    assert all(t.type == "scattermap" for t in fig.data)
    custom = map_figure(main, map_style="https://example.org/style.json")
    assert custom.layout.map.style == "https://example.org/style.json"


def test_mimebundle_has_the_widget_and_static_fallbacks(main: pl.DataFrame) -> None:
    m = MachineMap(main)
    bundle = m._repr_mimebundle_()
    assert bundle["application/vnd.jupyter.widget-view+json"]["model_id"] == m.widget.model_id
    assert bundle["application/vnd.plotly.v1+json"]["data"][0]["name"] == "land"
    # plotly.js is never stored per figure: the text/html fallback loads it from its CDN.
    assert "Plotly.newPlot" in bundle["text/html"]
    assert len(bundle["text/html"]) < 1_000_000
    json.dumps(bundle)  # the kernel must be able to send it
    live = MachineMap(main, live=True)
    live._repr_mimebundle_()
    # The figure widget re-sent its full state (plotly.py #4998 guard).
    assert live.figure_widget is not None
    assert len(live.figure_widget._widget_data) == len(live.figure_widget.data)
    no_fallback = MachineMap(main, fallback=False)._repr_mimebundle_()
    assert set(no_fallback) == {"text/plain", "application/vnd.jupyter.widget-view+json"}


def test_control_callback_errors_show_under_the_map(
    main: pl.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    m = MachineMap(main)

    def broken(frame: pl.DataFrame) -> None:
        raise RuntimeError("cannot prepare <this>")

    monkeypatch.setattr(m, "prepare", broken)
    m._oems.value = ("CAT",)  # must not raise into the kernel
    assert m.errors.count == 1
    assert m.errors.messages == ["RuntimeError in map controls: cannot prepare <this>"]
    box = m.widget.children[-1]
    assert box is m.errors.widget
    assert box.layout.display == ""
    assert "cannot prepare &lt;this&gt;" in box.value  # escaped


def test_pump_errors_show_under_the_map(main: pl.DataFrame) -> None:
    m = MachineMap(main)
    m.show_error(ValueError("from the pump"), context="live update")
    assert m.errors.messages == ["ValueError in live update: from the pump"]


# -- utilisation -----------------------------------------------------------------------------


def test_utilisation_data_are_the_utilisation_functions(main: pl.DataFrame) -> None:
    view = UtilisationView(main, tz="Europe/Copenhagen")
    data = view.data
    expected = utilisation.daily_hours(main, tz="Europe/Copenhagen")
    assert (
        data.daily.drop("label")
        .sort("MachineId", "date")
        .equals(expected.sort("MachineId", "date"))
    )
    assert data.fleet.equals(utilisation.fleet_utilisation(main, every="1h"))
    assert (
        data.hour_of_day.drop("label")
        .sort("MachineId", "hour")
        .equals(utilisation.hour_of_day(main, tz="Europe/Copenhagen").sort("MachineId", "hour"))
    )


def test_utilisation_figures_hold_the_data(main: pl.DataFrame) -> None:
    view = UtilisationView(main, live=True)
    figs = view.figure_widgets
    daily = figs["daily"].data[0]
    d = view.data.daily
    assert daily.type == "heatmap"  # machine × day: one row per machine, however many
    assert list(daily.y) == sorted(d.get_column("label").unique().to_list())
    assert list(daily.x) == sorted({str(v) for v in d.get_column("date").to_list()})
    z = np.asarray(daily.z)
    assert z.shape == (len(daily.y), len(daily.x))
    assert z.sum() == pytest.approx(d.get_column("operating_hours").fill_null(0).sum())
    assert daily.zmin == 0
    assert "sum of the operating-hour counter's increase" in figs["daily"].layout.title.text
    heat = figs["hour_of_day"].data[0]
    assert np.asarray(heat.z).shape == (len(daily.y), 24)
    assert heat.zmin == 0
    fleet = figs["fleet"].data[0]
    assert list(fleet.y) == pytest.approx(
        [u * 100 for u in view.data.fleet.get_column("utilisation")]
    )
    assert figs["fleet"].layout.yaxis.range[0] == 0


def test_utilisation_labels_carry_the_site(main: pl.DataFrame) -> None:
    view = UtilisationView(main)
    labels = set(view.data.daily.get_column("label").to_list())
    assert "WL-02 · Odense" in labels


def test_all_zero_utilisation_is_drawn_as_zero_and_says_why(main: pl.DataFrame) -> None:
    idle = main.with_columns(
        pl.lit(500.0).alias("CumulativeOperatingHours"), pl.lit(50.0).alias("CumulativeIdleHours")
    )
    figs = UtilisationView(idle).figures()
    daily = figs["daily"].data[0]
    assert np.asarray(daily.z).max() == 0
    assert (daily.zmin, daily.zmax) == (0, 1)  # zero at the white end, not mid-scale
    assert figs["hour_of_day"].data[0].zmin == 0
    assert figs["fleet"].layout.yaxis.range[0] == 0
    note = [a.text for a in figs["daily"].layout.annotations]
    assert note == ["all 5 machines off: no operating hours in this data"]


def test_utilisation_update_mutates_the_same_widgets(main: pl.DataFrame) -> None:
    view = UtilisationView(main.filter(pl.col("MachineId") == "M1"), live=True)
    before = view.figure_widgets
    assert view.data.daily.height == 1
    view.update(main)
    after = view.figure_widgets
    assert all(before[k] is after[k] for k in before)
    assert view.data.daily.height == 5
    assert len(after["daily"].data) == 1


def test_utilisation_static_figures_and_bundle(main: pl.DataFrame) -> None:
    view = UtilisationView(main)
    assert view.figure_widgets == {}  # static unless live: no plotly.js per figure
    static = view.figures()
    assert set(static) == {"daily", "fleet", "hour_of_day"}
    assert all(type(f) is go.Figure for f in static.values())
    bundle = view._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert bundle["text/html"].count("Plotly.newPlot") == 3
    json.dumps(bundle)
    live = UtilisationView(main, live=True)
    assert list(live.figures()["daily"].data[0].y) == list(live.figure_widgets["daily"].data[0].y)


def test_utilisation_handles_empty_frames() -> None:
    view = UtilisationView()
    assert view.data.daily.height == 0
    assert view.data.fleet.height == 0
    view.update(pl.DataFrame({"MachineId": ["a"]}))
    assert view.errors.count == 0


def test_utilisation_errors_show_under_the_view() -> None:
    view = UtilisationView()
    view.show_error(RuntimeError("oops"), context="live update")
    assert view.errors.messages == ["RuntimeError in live update: oops"]
    assert view.widget.children[-1] is view.errors.widget


# -- shared plumbing ------------------------------------------------------------------------------


def test_error_box_guard_and_clear() -> None:
    box = ErrorBox(keep=2)
    assert box.widget.layout.display == "none"

    def fail(x: int) -> None:
        raise ZeroDivisionError(f"n={x}")

    guarded = box.guard(fail, context="slider")
    for i in range(3):
        guarded(i)  # swallowed into the box, not raised
    assert box.count == 3
    assert box.messages == ["ZeroDivisionError in slider: n=2", "ZeroDivisionError in slider: n=1"]
    assert "traceback" in box.widget.value
    guarded(2)  # the same error again is counted, not listed twice
    assert box.messages == ["ZeroDivisionError in slider: n=2", "ZeroDivisionError in slider: n=1"]
    assert "(×2)" in box.widget.value
    box.clear()
    assert (box.count, box.messages, box.widget.value) == (0, [], "")
    assert box.widget.layout.display == "none"
    assert isinstance(box.widget, ipywidgets.HTML)


def test_exported_members_are_complete() -> None:
    public = {name for name in dir(widgets) if not name.startswith("_")}
    modules = {"map", "utilisation", "status"}
    assert set(widgets.__all__) == public - modules
    for name in widgets.__all__:
        assert getattr(widgets, name).__module__.startswith("tu_analytics.widgets")


@pytest.mark.parametrize(
    "module",
    [
        "widgets/__init__.py",
        "widgets/map.py",
        "widgets/utilisation.py",
        "widgets/_data.py",
        "widgets/_errors.py",
        "widgets/_basemap.py",
        "widgets/status.py",
        "sites.py",
        "live.py",
        "report.py",
    ],
)
def test_views_never_import_connection_code(module: str) -> None:
    path = Path(widgets.__file__).parent.parent / module
    tree = ast.parse(path.read_text(encoding="utf-8"))
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            imported.add(node.module or "")
            imported |= {f"{node.module}.{alias.name}" for alias in node.names}
    forbidden = ("_kafka", "_settings", "sandbox", "_connection", "_registry", "confluent_kafka")
    assert not [m for m in imported if any(part in m.split(".") for part in forbidden)]


def test_map_has_context_a_legend_and_counts_per_site(main: pl.DataFrame) -> None:
    one_state = main.filter(pl.col("MachineId").is_in(["M1", "M5"]))  # both at one site
    fig = map_figure(one_state)
    assert fig.layout.showlegend is True  # even when every machine shares a state
    by_name = {t.name.split(" (")[0]: t for t in fig.data}
    assert len(by_name["land"].x) > 100
    assert len(by_name["borders"].x) > 10
    assert by_name["cities"].text  # city labels near the fleet
    sites = by_name["site: number of machines"]
    assert list(sites.text) == ["2"]
    assert "2 machines" in sites.customdata[0]
    # Machines of a site are spread around it, and each keeps its exact position in hover.
    shown = {
        (round(x, 6), round(y, 6))
        for t in fig.data
        if t.mode == "markers"
        for x, y in zip(t.x, t.y, strict=True)
    }
    assert len(shown) == 2
    assert set(markers(fig)) == {"M1", "M5"}


def test_empty_map_still_shows_the_world_and_says_why() -> None:
    fig = map_figure(pl.DataFrame())
    land = next(t for t in fig.data if t.name == "land")
    assert len(land.x) > 100
    assert [a.text for a in fig.layout.annotations] == ["no machine with a position in this data"]


def test_live_map_says_when_the_last_record_came(main: pl.DataFrame) -> None:
    m = MachineMap(main, live=True)
    status = m.widget.children[2]
    newest = main.get_column("kafka_timestamp").max()
    assert status.last_record_ms == newest.timestamp() * 1000  # type: ignore[union-attr]
    assert "records/s over the last 60 s" in status.rate_text


def test_receipt_rate_counts_records_received_in_the_last_minute() -> None:
    now = datetime(2026, 1, 1, 12, tzinfo=UTC)
    frame = pl.DataFrame(
        {"kafka_timestamp": [now - timedelta(seconds=s) for s in (1, 2, 30, 59, 61, 3600)]}
    )
    got = receipt(frame, now=now)
    assert got.records_per_s == pytest.approx(4 / 60)
    assert got.last_record == now - timedelta(seconds=1)
    assert receipt(pl.DataFrame(), now=now).records_per_s == 0.0
    # One record a minute is not "0.0 records/s".
    assert got.text.startswith("0.067 records/s over the last 60 s")
    assert [format_rate(r) for r in (0.0, 1 / 60, 3.25, 12.4)] == ["0", "0.017", "3.2", "12"]
