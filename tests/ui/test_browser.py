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
import shutil
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
ROOT = Path(__file__).resolve().parents[2]

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


# -- the shipped notebooks in JupyterLab -----------------------------------------------------------

NOTEBOOKS = ROOT / "notebooks"
ALL_RUN_JS = """([first, n]) => {
  const prompts = [...document.querySelectorAll('.jp-Notebook .jp-CodeCell .jp-InputPrompt')]
    .map(p => p.textContent.trim());
  const ran = prompts.slice(first, first + n);
  return ran.length === n && ran.every(t => /^\\[\\d+\\]:$/.test(t));
}"""
# The live status line once a record arrived in the last minute ("0.017 records/s" and up).
LIVE_RATE_JS = """() => {
  const el = document.querySelector('.tu-live-status');
  const m = el && el.textContent.match(/last record (\\d+) s ago · ([\\d.]+) records\\/s/);
  return !!m && Number(m[2]) > 0;
}"""
OPERATING = re.compile(r"(\d+) of (\d+) machines? operating")


def _copy_notebook(lab, name: str) -> int:
    """Copy a shipped notebook into the server's root; returns its number of code cells."""
    shutil.copyfile(NOTEBOOKS / name, lab.root / name)
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    return sum(c.cell_type == "code" for c in nb.cells)


@contextlib.contextmanager
def _notebook_page(browser, lab, name: str, artifacts: Path) -> Iterator:
    """A page with the shipped notebook ``name`` open and its kernel idle, network blocked;
    on leaving, no page error and no request beyond the server."""
    context = browser.new_context(viewport={"width": 1400, "height": 2400})
    blocked = _offline(context, lab.url)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        with _on_failure(page, artifacts / f"{Path(name).stem}-failure.png"):
            _open(page, lab, name)
            yield page
            _check_no_error_output(page)
        assert not errors, errors
        assert not blocked, blocked  # nothing asked for the internet
    finally:
        context.close()
        lab.shutdown_kernels()


def _open(page, lab, name: str) -> None:
    page.goto(lab.open_url(name))
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=TIMEOUT_MS)
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']",
                           timeout=TIMEOUT_MS)
    dialog = page.locator(".jp-Dialog")
    with contextlib.suppress(PlaywrightTimeout):
        dialog.wait_for(timeout=1500)
        dialog.locator(".jp-mod-accept").click()
    page.locator(".jp-Toolbar-kernelName", has_text="Python 3").wait_for(timeout=TIMEOUT_MS)


def _run_menu(page, item: str) -> None:
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name=item, exact=True).click()


def _wait_cells_run(page, first: int, n: int) -> None:
    """Until code cells ``first`` … ``first + n - 1`` show an execution count."""
    page.wait_for_function(ALL_RUN_JS, arg=[first, n], timeout=4 * TIMEOUT_MS)
    page.wait_for_timeout(1500)  # let the last frames settle before the screenshots


def _code_cell(page, i: int):
    return page.locator(".jp-Notebook .jp-CodeCell").nth(i)


def _check_no_error_output(page) -> None:
    assert not page.locator(".jp-Notebook .jp-RenderedText[data-mime-type="
                            "'application/vnd.jupyter.error']").count()
    stderr = page.locator(".jp-OutputArea-output[data-mime-type="
                          "'application/vnd.jupyter.stderr']").all_inner_texts()
    assert not stderr, f"stderr in the notebook: {stderr}"


def _operating(text: str) -> int:
    """Machines operating, from an activity sentence; fails on "all N machines off"."""
    found = OPERATING.search(text)
    assert found, f"nothing operating at the sandbox's night hour: {text!r}"
    return int(found.group(1))


def _legend_count(plot: dict, state: str) -> int:
    for text in plot["legend"]:
        found = re.fullmatch(rf"{state} \((\d+)\)", text)
        if found:
            return int(found.group(1))
    raise AssertionError(f"no {state!r} in the legend {plot['legend']}")


def test_quickstart_map_at_night_has_context_and_a_working_machine_offline(
    lab, browser, colour_pixels, artifacts, docs_picture
) -> None:
    """01-quickstart, Run All: the map has land, city labels, a legend and a count per site,
    and at Sunday 02:00 UTC (European day sites closed) its legend still shows machines
    operating; readings were measured in the last 3 h."""
    name = "01-quickstart.ipynb"
    cells = _copy_notebook(lab, name)
    with _notebook_page(browser, lab, name, artifacts) as page:
        _run_menu(page, "Run All Cells")
        _wait_cells_run(page, 0, cells)
        status = page.locator(".jp-Notebook .widget-html-content",
                              has_text=re.compile(r"^\d+ machines")).first.inner_text()
        machines = int(status.split()[0])
        (plot,) = page.evaluate(PLOTS_JS, ".jp-Notebook")
        _check_map_has_context(plot, machines)
        assert not plot["maplibre"]
        assert _legend_count(plot, "operating") >= 1
        measured = page.locator(".jp-OutputArea-output", has_text="readings measured").inner_text()
        assert int(measured.split()[0]) > 0, measured
        _code_cell(page, 0).locator(".jp-InputPrompt").click()  # the picture: no cell marked
        map_cell = _code_cell(page, cells - 1)
        map_cell.scroll_into_view_if_needed()
        map_cell.screenshot(path=str(artifacts / "notebook.png"))
        png = page.locator(".jp-Notebook .js-plotly-plot").first.screenshot(
            path=str(artifacts / "notebook-map.png"))
        _check_land_pixels(colour_pixels, png)
    docs_picture("notebook.png")


def test_live_map_at_night_shows_records_arriving_offline(
    lab, browser, colour_pixels, artifacts, docs_picture
) -> None:
    """02-live-map, every cell but the last (which stops the tail): the live map has context,
    and its status line says a record came seconds ago at a rate above zero, at night."""
    name = "02-live-map.ipynb"
    cells = _copy_notebook(lab, name)
    with _notebook_page(browser, lab, name, artifacts) as page:
        last = _code_cell(page, cells - 1)
        last.locator(".jp-InputPrompt").click()
        _run_menu(page, "Run All Above Selected Cell")
        _wait_cells_run(page, 0, cells - 1)
        # A record arrives every minute or so at night: wait for one inside the rate's minute.
        page.wait_for_function(LIVE_RATE_JS, timeout=4 * TIMEOUT_MS, polling=1000)
        status = page.locator(".tu-live-status").inner_text()
        ago = int(re.match(r"last record (\d+) s ago", status).group(1))  # type: ignore[union-attr]
        assert ago < 120, status
        (plot,) = page.evaluate(PLOTS_JS, ".jp-Notebook")
        shown = page.locator(".jp-Notebook .widget-html-content",
                             has_text=re.compile(r"^\d+ machines")).first.inner_text()
        _check_map_has_context(plot, int(shown.split()[0]))
        assert _legend_count(plot, "operating") >= 1
        cell = _code_cell(page, 1)
        cell.scroll_into_view_if_needed()
        png = cell.screenshot(path=str(artifacts / "live-map.png"))
        _check_land_pixels(colour_pixels, png)
        page.keyboard.press("Control+Enter")  # the last cell: stop, then the static figure
        _wait_cells_run(page, cells - 1, 1)
        assert len(page.evaluate(PLOTS_JS, ".jp-Notebook")) == 2
    docs_picture("live-map.png")


def test_utilisation_at_night_counts_operating_hours(
    lab, browser, artifacts, docs_picture
) -> None:
    """03-utilisation, Run All: machine × day, fleet and hour-of-day charts from 0, and at
    Sunday 02:00 UTC the view says machines operate and the last local day has hours > 0."""
    name = "03-utilisation.ipynb"
    cells = _copy_notebook(lab, name)
    with _notebook_page(browser, lab, name, artifacts) as page:
        _run_menu(page, "Run All Cells")
        _wait_cells_run(page, 0, cells)
        daily, fleet, heat = page.evaluate(PLOTS_JS, ".jp-Notebook")
        assert daily["types"] == heat["types"] == ["heatmap"]
        assert daily["heatmapImages"] == heat["heatmapImages"] == 1
        assert fleet["types"] == ["scatter"]
        activity = page.locator(".jp-Notebook .widget-html-content",
                                has_text=OPERATING).first.inner_text()
        assert _operating(activity) >= 1
        # What the heatmap holds in the page (its hover data): hours per machine × local day.
        last_day = page.evaluate("""() => {
          const gd = document.querySelector('.jp-Notebook .js-plotly-plot');
          const z = gd.calcdata[0][0].z;  // what was drawn (the JSON may hold base64 arrays)
          return Array.from(z, row => Number(row[row.length - 1]));
        }""")
        assert max(last_day) > 0, last_day
        cell = _code_cell(page, 1)
        cell.scroll_into_view_if_needed()
        cell.screenshot(path=str(artifacts / "utilisation.png"))
    docs_picture("utilisation.png")


# -- the demo's HTML report ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def demo_report(night_sandbox, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tu-analytics demo`` against the night sandbox (already up, so demo reuses it)."""
    out = tmp_path_factory.mktemp("demo") / "report.html"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TU_")}
    env["TU_SANDBOX_DIR"] = str(night_sandbox.root)
    res = subprocess.run([sys.executable, "-m", "tu_analytics.cli", "demo", "-o", str(out)],
                         env=env, capture_output=True, text=True, timeout=180)
    assert res.returncode == 0, res.stderr
    assert "sandbox already up" in res.stderr
    assert "pulling the last 24h" in res.stderr
    assert out.exists()
    return out


def test_demo_report_from_file_has_context_offline(
    browser, demo_report, colour_pixels, artifacts, docs_picture
) -> None:
    """The demo's report from file://, at Sunday 02:00 UTC: map with context, sites, machines,
    faults, utilisation; and machines operating, with operating hours, in the page's text."""
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
            _check_report_shows_work(page, themap)
            page.screenshot(path=str(artifacts / "report.png"), full_page=True)
        assert not errors, errors
        assert not blocked, blocked  # the report asks nothing of the network
    finally:
        context.close()
    docs_picture("report.png")


def _grid_rows(page, heading: str) -> list[dict[str, str]]:
    table = page.locator(f"h2:has-text('{heading}') + table")
    header = table.locator("tr").first.locator("th").all_inner_texts()
    return [dict(zip(header, row.locator("td").all_inner_texts(), strict=True))
            for row in table.locator("tr").all()[1:]]


def _hours(text: str) -> float:
    return float(text.replace(",", "").removesuffix("h").strip() or 0) if text != "–" else 0.0


def _check_report_shows_work(page, themap: dict) -> None:
    """Something works at the night hour, as the page says it: the activity sentence, the map's
    legend, the sites' operating hours and an operating machine with hours in the window."""
    operating = _operating(page.locator(".activity").inner_text())
    assert operating >= 1
    assert _legend_count(themap, "operating") == operating
    sites = _grid_rows(page, "Sites")
    assert sum(int(r["operating"]) for r in sites) == operating
    assert sum(_hours(r["operating hours in window"]) for r in sites) > 0
    machines = _grid_rows(page, "Machines")
    working = [r for r in machines if r["state"] == "operating"]
    assert len(working) == operating
    assert any(_hours(r["hours in window"]) > 0 for r in working), working


def test_tile_style_offline_shows_a_notice_land_and_every_marker(
    browser, colour_pixels, artifacts, docs_picture, tmp_path: Path
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
    docs_picture("tiles-offline.png")
