"""The widgets and the demo report as a browser renders them (JupyterLab + headless Chromium),
with the network blocked: only the local JupyterLab server and the page itself answer.

Checked in the rendered page, not in the figure JSON: the land of the shipped Natural Earth
base layer is painted (its colour covers a good share of the map's screenshot), city labels and
the legend are SVG text in the page, and each site's marker shows how many machines it holds
(together: every machine on the map). Screenshots go to artifacts/ui/ for a person to look at.
"""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import nbformat
import polars as pl
import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from tu_analytics.widgets import MachineMap
from tu_analytics.widgets._basemap import LAND, WATER

TIMEOUT_MS = 90_000

# Per plotly graph div: its traces and what was drawn of them in SVG.
PLOTS_JS = """(scope) => {
  const root = scope ? document.querySelector(scope) : document;
  return [...root.querySelectorAll('.js-plotly-plot')].map(gd => {
    const data = gd._fullData || [];
    const site = data.find(t => (t.name || '').startsWith('site'));
    return {
      types: data.map(t => t.type),
      names: data.map(t => t.name),
      visible: gd.offsetParent !== null, width: gd.clientWidth, height: gd.clientHeight,
      fills: gd.querySelectorAll('.scatterlayer .js-fill').length,
      texts: [...gd.querySelectorAll('.scatterlayer .textpoint text')].map(t => t.textContent),
      legend: [...gd.querySelectorAll('.legend .legendtext')].map(t => t.textContent),
      notes: [...gd.querySelectorAll('.annotation-text')].map(t => t.textContent),
      siteCounts: site && site.text ? site.text.map(Number) : [],
      heatmapImages: gd.querySelectorAll('.heatmaplayer image').length,
      lines: gd.querySelectorAll('.scatterlayer .js-line').length,
      maplibre: !!(gd._fullLayout && gd._fullLayout.map && gd._fullLayout.map._subplot),
    };
  });
}"""

# The markers MapLibre drew (its own rendered features), for the tile-style map.
RENDERED_CIRCLES_JS = """() => {
  const gd = document.querySelector('.js-plotly-plot');
  const sub = gd && gd._fullLayout.map && gd._fullLayout.map._subplot;
  if (!sub || !sub.map || !sub.map.loaded()) return -1;
  return sub.map.queryRenderedFeatures().filter(f => f.layer.type === 'circle'
      && /^plotly-trace-layer-/.test(f.layer.id)).length;
}"""


def _offline(context, allowed: str) -> list[str]:
    """Abort every request that is not for ``allowed`` (a URL prefix), file:, data: or blob:;
    returns the list of blocked URLs (it fills while the page runs)."""
    blocked: list[str] = []

    def route(request_route) -> None:
        url = request_route.request.url
        if url.startswith((allowed, "file:", "data:", "blob:")):
            request_route.continue_()
        else:
            blocked.append(url)
            request_route.abort()

    context.route("**/*", route)
    return blocked


def _check_map_has_context(plot: dict, machines: int) -> None:
    """Land, city labels, a legend, and counts per site that add up to every machine."""
    assert plot["names"][:3] == ["land", "borders", "cities"]
    assert plot["fills"] >= 1, "the land polygons were not painted"
    assert len(plot["texts"]) >= 3, f"too few labels on the map: {plot['texts']}"
    assert plot["legend"], "no legend"
    assert any(re.match(r"(operating|idle|off|no recent data) \(\d+\)", t) for t in plot["legend"])
    counts = plot["siteCounts"]
    assert counts, "no site markers"
    assert sum(counts) == machines > 0
    for n in counts:  # each count is drawn as text in the page
        assert str(n) in plot["texts"]


def _check_land_pixels(colour_pixels, png: bytes) -> dict[str, int]:
    counts = colour_pixels(png, {"land": LAND, "water": WATER}, tolerance=6)
    assert counts["land"] > 20_000, counts
    assert counts["water"] > 2_000, counts
    return counts


# -- the notebook in JupyterLab --------------------------------------------------------------------

NOTEBOOK = "fleet.ipynb"
CELLS = [
    "import tu_analytics as tu\n"
    "conn = tu.connect()\n"
    "win = conn.window(last='24h', progress=False)\n"
    "print(win.main.height, 'records from', win.main['MachineId'].n_unique(), 'machines')",
    "from tu_analytics.widgets import MachineMap, UtilisationView\n"
    "machine_map = MachineMap(win.main)\n"
    "machine_map",
    "UtilisationView(win.main, tz='site')",
    "live_map = MachineMap(win.main, live=True, height=450)\n"
    "live_map",
    "print('machines on the map:', machine_map.machines.height)",
]


def _write_notebook(root: Path) -> Path:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)",
                                 "language": "python"}
    path = root / NOTEBOOK
    nbformat.write(nb, path)
    return path


@contextlib.contextmanager
def _on_failure(page, shot: Path) -> Iterator[None]:
    """Keep a screenshot and the page's text when a check fails."""
    try:
        yield
    except BaseException as exc:
        with contextlib.suppress(Exception):
            page.screenshot(path=str(shot))
            text = page.locator("body").inner_text(timeout=2000)
            exc.add_note(f"screenshot: {shot}\npage text:\n{text[-3000:]}")
        raise


def test_notebook_map_has_land_cities_legend_and_site_counts_offline(
    lab, browser, colour_pixels, artifacts
) -> None:
    _write_notebook(lab.root)
    # Tall enough for every output to be laid out at once (JupyterLab scrolls inside the page).
    context = browser.new_context(viewport={"width": 1400, "height": 4200})
    blocked = _offline(context, lab.url)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        with _on_failure(page, artifacts / "notebook-failure.png"):
            _run_notebook(page, lab)
            _check_notebook(page, colour_pixels, artifacts)
        assert not errors, errors
        assert not blocked, blocked  # nothing asked for the internet
    finally:
        context.close()


def _run_notebook(page, lab) -> None:
    page.goto(lab.open_url(NOTEBOOK))
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=TIMEOUT_MS)
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']",
                           timeout=TIMEOUT_MS)
    dialog = page.locator(".jp-Dialog")
    with contextlib.suppress(PlaywrightTimeout):
        dialog.wait_for(timeout=1500)
        dialog.locator(".jp-mod-accept").click()
    page.locator(".jp-Toolbar-kernelName", has_text="Python 3").wait_for(timeout=TIMEOUT_MS)
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
    printed = page.locator(".jp-Notebook .jp-Cell").nth(len(CELLS) - 1).locator(
        ".jp-OutputArea-output", has_text="machines on the map")
    printed.wait_for(timeout=TIMEOUT_MS)
    # The static map, three static charts and the live map.
    page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length >= 5",
                           timeout=TIMEOUT_MS)
    page.locator(".tu-live-status").wait_for(timeout=TIMEOUT_MS)
    page.wait_for_timeout(1500)  # let the last frames settle before the screenshots


def _check_notebook(page, colour_pixels, artifacts: Path) -> None:
    printed = page.locator(".jp-OutputArea-output", has_text="machines on the map").first
    machines = int(printed.inner_text().rsplit(":", 1)[1])
    page.screenshot(path=str(artifacts / "notebook.png"))
    plots = page.evaluate(PLOTS_JS, ".jp-Notebook")
    assert len(plots) == 5, [p["names"] for p in plots]
    assert all(p["visible"] and p["width"] > 300 and p["height"] > 200 for p in plots)
    static_map, daily, fleet, heat, live_map = plots
    # The static map (JupyterLab's plotly renderer, no plotly.js in the notebook) and the live
    # one (a FigureWidget) both have context and a count per site.
    for plot in (static_map, live_map):
        _check_map_has_context(plot, machines)
        assert not plot["maplibre"]
    png = page.locator(".jp-Notebook .js-plotly-plot").nth(0).screenshot(
        path=str(artifacts / "notebook-map.png"))
    _check_land_pixels(colour_pixels, png)
    page.locator(".jp-Notebook .js-plotly-plot").nth(4).screenshot(
        path=str(artifacts / "notebook-live-map.png"))
    status = page.locator(".tu-live-status").inner_text()
    assert re.match(r"last record \d+ (s|min|h) ago · [\d.]+ records/s over the last 60 s", status)

    # Utilisation: machine × day, the fleet line, hour of day; each from 0, aggregation stated.
    assert daily["types"] == ["heatmap"]
    assert daily["heatmapImages"] == 1
    assert fleet["types"] == ["scatter"]
    assert heat["types"] == ["heatmap"]
    assert heat["heatmapImages"] == 1
    for i, name in enumerate(("daily", "fleet", "hour-of-day"), start=1):
        page.locator(".jp-Notebook .js-plotly-plot").nth(i).screenshot(
            path=str(artifacts / f"notebook-{name}.png"))
    activity = page.locator(".jp-Notebook .widget-html-content",
                            has_text=re.compile(r"machines? (operating|off)")).first
    assert re.search(r"(\d+ of \d+ machines operating|all \d+ machines off)",
                     activity.inner_text())

    assert not page.locator(".jp-Notebook .jp-RenderedText[data-mime-type="
                            "'application/vnd.jupyter.error']").count()
    stderr = page.locator(".jp-OutputArea-output[data-mime-type="
                          "'application/vnd.jupyter.stderr']").all_inner_texts()
    assert not stderr, f"stderr in the notebook: {stderr}"


# -- the demo's HTML report ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_report(sandbox, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tu-analytics demo`` against the session sandbox (already up, so demo reuses it)."""
    out = tmp_path_factory.mktemp("demo") / "report.html"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TU_")}
    env["TU_SANDBOX_DIR"] = str(sandbox.root)
    res = subprocess.run([sys.executable, "-m", "tu_analytics.cli", "demo", "-o", str(out)],
                         env=env, capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stderr
    assert "sandbox already up" in res.stderr
    assert "pulling the last 24h" in res.stderr
    assert out.exists()
    return out


def test_demo_report_from_file_has_context_offline(
    browser, demo_report, colour_pixels, artifacts
) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    blocked = _offline(context, "file:")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        with _on_failure(page, artifacts / "report-failure.png"):
            page.goto(demo_report.as_uri())
            page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length >= 4",
                                   timeout=TIMEOUT_MS)
            page.wait_for_timeout(1000)
            rows = dict(zip(page.locator("table.summary th").all_inner_texts(),
                            page.locator("table.summary td").all_inner_texts(), strict=True))
            machines = int(rows["machines on the map"].replace(",", ""))
            plots = page.evaluate(PLOTS_JS, None)
            themap = plots[0]
            _check_map_has_context(themap, machines)
            png = page.locator(".js-plotly-plot").first.screenshot(
                path=str(artifacts / "report-map.png"))
            _check_land_pixels(colour_pixels, png)
            assert [p["types"] for p in plots[1:]] == [["heatmap"], ["scatter"], ["heatmap"]]
            # Tables for people: sites, machines (local time, staleness), faults.
            for heading in ("Sites", "Machines", "Faults", "Utilisation"):
                assert page.get_by_role("heading", name=heading, exact=True).count() == 1
            site_rows = page.locator("h2:has-text('Sites') + table tr").count() - 1
            assert site_rows == len(themap["siteCounts"])
            assert page.locator("h2:has-text('Machines') + table tr").count() - 1 == machines
            assert re.search(r"(ago|machines)", page.locator(".activity").inner_text())
            page.screenshot(path=str(artifacts / "report.png"), full_page=True)
        assert not errors, errors
        assert not blocked, blocked  # the report asks nothing of the network
    finally:
        context.close()


def test_tile_style_offline_shows_a_notice_land_and_every_marker(
    browser, colour_pixels, artifacts, tmp_path: Path
) -> None:
    """A tile style whose tiles cannot load: a visible notice, the base layer and all markers."""
    t0 = datetime(2026, 11, 27, 12, tzinfo=UTC)
    sites = [(55.7113, 12.5955, "Nordhavn"), (52.533, 13.368, "Berlin"), (51.4834, -0.13, "London")]
    rows = [
        {"MachineId": f"m{i}", "kafka_timestamp": t0 + timedelta(minutes=i), "City": city,
         "Latitude": lat + 0.0005 * i, "Longitude": lon}
        for i, (lat, lon, city) in enumerate(sites * 3)
    ]
    page_path = tmp_path / "tiles.html"
    page_path.write_text(MachineMap(pl.DataFrame(rows), map_style="carto-positron").to_html(),
                         encoding="utf-8")
    context = browser.new_context(viewport={"width": 1100, "height": 700})
    blocked = _offline(context, "file:")
    page = context.new_page()
    try:
        with _on_failure(page, artifacts / "tiles-failure.png"):
            page.goto(page_path.as_uri())
            page.wait_for_function(f"({RENDERED_CIRCLES_JS})() >= {len(rows)}",
                                   timeout=TIMEOUT_MS)
            page.wait_for_timeout(500)
            notice = page.locator(".annotation-text", has_text="load from the internet")
            assert notice.is_visible()
            png = page.locator(".js-plotly-plot").screenshot(
                path=str(artifacts / "tiles-offline.png"))
            counts = colour_pixels(png, {"land": LAND, "water": WATER}, tolerance=6)
            assert counts["land"] > 20_000, counts
            assert counts["water"] > 2_000, counts
        assert any("cartocdn" in url for url in blocked)  # it did try, and failed
    finally:
        context.close()
