"""The widgets and the demo report as a browser renders them (JupyterLab + headless Chromium).

"Rendered" is checked three ways for the map: MapLibre's own ``queryRenderedFeatures()`` must
return every marker of every visible trace (the features it placed when it drew the scene), the
marker colours must be on the WebGL canvas in a screenshot (plotly's SVG overlays hidden, so the
legend does not count), and a screenshot is saved to artifacts/ui/ for a person to look at.
"""

from __future__ import annotations

import contextlib
import functools
import http.server
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import nbformat
import pytest
from playwright.sync_api import TimeoutError as PlaywrightTimeout

TIMEOUT_MS = 90_000

# -- JavaScript run in the page ------------------------------------------------------------------

# Per plotly graph div: its traces, the SVG nodes drawn, and for a map what MapLibre rendered.
PLOTS_JS = """(scope) => {
  const root = scope ? document.querySelector(scope) : document;
  return [...root.querySelectorAll('.js-plotly-plot')].map(gd => {
    const fl = gd._fullLayout || {};
    const traces = (gd._fullData || []).map(t => ({
      type: t.type, mode: t.mode || null, visible: t.visible, uid: t.uid,
      points: t.type.startsWith('scatter') ? (t.lat || t.x || []).length
              : t.type === 'heatmap' ? (t.z || []).length : (t.y || []).length,
      colour: t.marker && typeof t.marker.color === 'string' ? t.marker.color : null,
    }));
    const out = {
      traces,
      width: gd.clientWidth, height: gd.clientHeight,
      visible: gd.offsetParent !== null,
      inReportMap: !!gd.closest('#tu-map, #tu-map-fallback'),
      bars: gd.querySelectorAll('.barlayer .point path').length,
      heatmapImages: gd.querySelectorAll('.heatmaplayer image').length,
      lines: gd.querySelectorAll('.scatterlayer .js-line').length,
      svgPoints: gd.querySelectorAll('.scatterlayer .point').length,
      map: null,
    };
    const sub = fl.map && fl.map._subplot;
    if (sub && sub.map) {
      const m = sub.map;
      let features = [];
      try { features = m.queryRenderedFeatures(); } catch (e) { out.queryError = String(e); }
      const ids = {};
      for (const f of features) {
        const match = /^plotly-trace-layer-(.+)-circle$/.exec(f.layer.id);
        if (match) (ids[match[1]] = ids[match[1]] || new Set()).add(f.id);
      }
      out.map = {
        loaded: m.loaded(),
        canvases: gd.querySelectorAll('canvas.maplibregl-canvas').length,
        renderedIds: Object.fromEntries(
            Object.entries(ids).map(([k, v]) => [k, [...v].sort((a, b) => a - b)])),
      };
    }
    return out;
  });
}"""

# True once a map in scope has drawn every marker of its visible traces.
MAP_RENDERED_JS = """(scope) => {
  const root = scope ? document.querySelector(scope) : document;
  const gd = [...root.querySelectorAll('.js-plotly-plot')].find(
      g => g._fullLayout && g._fullLayout.map && g._fullLayout.map._subplot);
  if (!gd) return false;
  const m = gd._fullLayout.map._subplot.map;
  if (!m || !m.loaded()) return false;
  const want = gd._fullData.filter(t => t.type === 'scattermap' && t.visible === true
      && t.mode === 'markers').reduce((n, t) => n + (t.lat || []).length, 0);
  const got = m.queryRenderedFeatures().filter(f => f.layer.type === 'circle').length;
  return want > 0 && got >= want;
}"""

HIDE_SVG_JS = """([scope, hide]) => {
  const root = scope ? document.querySelector(scope) : document;
  for (const svg of root.querySelectorAll('.js-plotly-plot .main-svg'))
    svg.style.visibility = hide ? 'hidden' : '';
}"""


def _map_of(plots: list[dict]) -> dict:
    maps = [p for p in plots if p["map"] is not None]
    assert len(maps) == 1, f"expected one map, found {len(maps)}"
    return maps[0]


def _marker_traces(plot: dict) -> list[dict]:
    return [t for t in plot["traces"]
            if t["type"] == "scattermap" and t["mode"] == "markers" and t["visible"] is True
            and t["points"] > 0]


def _assert_every_marker_rendered(plot: dict) -> int:
    """Every point of every visible marker trace is among MapLibre's rendered features."""
    m = plot["map"]
    assert m["loaded"]
    assert m["canvases"] == 1
    traces = _marker_traces(plot)
    assert traces, "the map has no markers in its data"
    for t in traces:
        # Feature ids are plotly's per-trace point numbering; count the distinct ones drawn.
        ids = m["renderedIds"].get(t["uid"], [])
        assert len(ids) == t["points"], (
            f"trace {t['uid']}: {t['points']} markers in the data, rendered ids {ids}")
    return sum(t["points"] for t in traces)


def _assert_marker_pixels(page, colour_pixels, plot: dict, canvas, scope: str | None,
                          path: Path) -> dict[str, int]:
    """Screenshot the map canvas with plotly's SVG layers hidden: marker colours must be on it
    (WebGL drew the markers, not just the legend). Machines of one site share a position, so
    a marker can hide another's; only the trace drawn last can never be covered."""
    page.evaluate(HIDE_SVG_JS, [scope, True])
    try:
        png = canvas.screenshot(path=str(path))
    finally:
        page.evaluate(HIDE_SVG_JS, [scope, False])
    traces = _marker_traces(plot)
    colours = {t["uid"]: t["colour"] for t in traces if t["colour"]}
    assert colours, "no marker colours to look for"
    counts = colour_pixels(png, colours)
    assert counts[traces[-1]["uid"]] >= 20, f"marker colours on the canvas: {counts}"
    assert sum(counts.values()) >= 20 * len(traces), f"marker colours on the canvas: {counts}"
    return counts


# -- the notebook in JupyterLab --------------------------------------------------------------------

NOTEBOOK = "fleet.ipynb"
CELLS = [
    "import tu_analytics as tu\n"
    "conn = tu.connect()\n"
    "win = conn.window(last='2h', progress=False)\n"
    "print(win.main.height, 'records from', win.main['MachineId'].n_unique(), 'machines')",
    "from tu_analytics.widgets import MachineMap, UtilisationView\n"
    "machine_map = MachineMap(win.main)\n"
    "machine_map",
    "UtilisationView(win.main)",
    "print('machines on the map:', machine_map.machines.height)",
]


def _write_notebook(root: Path) -> Path:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in CELLS])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3 (ipykernel)",
                                 "language": "python"}
    path = root / NOTEBOOK
    nbformat.write(nb, path)
    return path


def test_notebook_shows_the_map_and_the_charts(lab, browser, colour_pixels, artifacts) -> None:
    _write_notebook(lab.root)
    # Tall enough for every output to be laid out at once (JupyterLab scrolls inside the page).
    page = browser.new_page(viewport={"width": 1400, "height": 3000})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        with _on_failure(page, artifacts / "notebook-failure.png"):
            _run_and_check_notebook(page, lab, colour_pixels, artifacts)
        assert not errors, errors
    finally:
        page.close()


@contextlib.contextmanager
def _on_failure(page, shot: Path) -> Iterator[None]:
    """Keep a screenshot and the notebook's text when a check fails."""
    try:
        yield
    except BaseException as exc:
        with contextlib.suppress(Exception):
            page.screenshot(path=str(shot))
            text = page.locator(".jp-Notebook").inner_text(timeout=2000)
            exc.add_note(f"screenshot: {shot}\nnotebook text:\n{text[-3000:]}")
        raise


def _run_and_check_notebook(page, lab, colour_pixels, artifacts: Path) -> None:
    page.goto(lab.open_url(NOTEBOOK))
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=TIMEOUT_MS)
    page.wait_for_selector(".jp-Notebook-ExecutionIndicator[data-status='idle']",
                           timeout=TIMEOUT_MS)
    # The kernel is the notebook's python3 (a dialog, if one still asks, is answered so).
    dialog = page.locator(".jp-Dialog")
    with contextlib.suppress(PlaywrightTimeout):
        dialog.wait_for(timeout=1500)
        dialog.locator(".jp-mod-accept").click()
    page.locator(".jp-Toolbar-kernelName", has_text="Python 3").wait_for(timeout=TIMEOUT_MS)
    page.get_by_role("menuitem", name="Run", exact=True).click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()

    # Every cell ran: the last prints the kernel's count of machines on the map.
    printed = page.locator(".jp-Notebook .jp-Cell").nth(len(CELLS) - 1).locator(
        ".jp-OutputArea-output", has_text="machines on the map")
    printed.wait_for(timeout=TIMEOUT_MS)
    kernel_count = int(printed.inner_text().rsplit(":", 1)[1])
    page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length >= 4",
                           timeout=TIMEOUT_MS)
    page.wait_for_function(MAP_RENDERED_JS, arg=".jp-Notebook", timeout=TIMEOUT_MS)
    page.wait_for_timeout(500)  # let the last frames settle before the screenshots
    page.screenshot(path=str(artifacts / "notebook.png"))

    plots = page.evaluate(PLOTS_JS, ".jp-Notebook")
    assert len(plots) == 4, [p["traces"] for p in plots]  # the map + three charts
    assert all(p["visible"] and p["width"] > 300 and p["height"] > 200 for p in plots)

    # The map: every machine the kernel put on it was rendered by MapLibre, in colour.
    themap = _map_of(plots)
    rendered = _assert_every_marker_rendered(themap)
    assert rendered == kernel_count > 0
    status = page.locator(".jp-Notebook .widget-html-content", has_text="machines").first
    assert status.inner_text().startswith(f"{kernel_count} machines")
    canvas = page.locator(".jp-Notebook canvas.maplibregl-canvas")
    _assert_marker_pixels(page, colour_pixels, themap, canvas, ".jp-Notebook",
                          artifacts / "notebook-map-canvas.png")
    page.locator(".jp-Notebook .js-plotly-plot").nth(0).screenshot(
        path=str(artifacts / "notebook-map.png"))

    # The utilisation charts: stacked bars, the fleet line, the hour-of-day heatmap.
    daily, fleet, heat = plots[1:]
    assert [t["type"] for t in daily["traces"]] == ["bar", "bar"]
    assert daily["bars"] > 0
    assert [t["type"] for t in fleet["traces"]] == ["scatter"]
    assert fleet["lines"] == 1
    assert fleet["svgPoints"] > 0
    assert [t["type"] for t in heat["traces"]] == ["heatmap"]
    assert heat["heatmapImages"] == 1
    assert heat["traces"][0]["points"] > 0
    for i, name in enumerate(("daily", "fleet", "hour-of-day"), start=1):
        page.locator(".jp-Notebook .js-plotly-plot").nth(i).screenshot(
            path=str(artifacts / f"notebook-{name}.png"))

    # Last, so the checks above ran: no cell raised or wrote to stderr (warnings land there).
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
                         env=env, capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "sandbox already up" in res.stderr
    assert out.exists()
    assert "report:" in res.stdout
    return out


@pytest.fixture(scope="module")
def http_root(demo_report: Path) -> Iterator[str]:
    handler = functools.partial(_QuietHandler, directory=str(demo_report.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def _open_report(browser, url: str, *, init_script: str | None = None):
    page = browser.new_page(viewport={"width": 1280, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    if init_script:
        page.add_init_script(init_script)
    page.goto(url)
    return page, errors


def _report_machines(page) -> int:
    rows = dict(zip(page.locator("table.summary th").all_inner_texts(),
                    page.locator("table.summary td").all_inner_texts(), strict=True))
    return int(rows["machines on the map"].replace(",", ""))


def _check_report_map(page, colour_pixels, shot: Path, canvas_shot: Path) -> dict:
    page.wait_for_function(MAP_RENDERED_JS, arg="#tu-map", timeout=TIMEOUT_MS)
    page.wait_for_timeout(300)
    plots = page.evaluate(PLOTS_JS, "#tu-map")
    themap = _map_of(plots)
    assert _assert_every_marker_rendered(themap) == _report_machines(page) > 0
    canvas = page.locator("#tu-map canvas.maplibregl-canvas")
    _assert_marker_pixels(page, colour_pixels, themap, canvas, "#tu-map", canvas_shot)
    page.locator("#tu-map").screenshot(path=str(shot))
    assert page.locator("#tu-map-fallback").is_hidden()
    return themap


def _check_report_charts(page) -> None:
    plots = page.evaluate(PLOTS_JS, None)
    charts = [p for p in plots if not p["inReportMap"]]
    assert all(p["visible"] for p in charts)
    assert [[t["type"] for t in p["traces"]] for p in charts] == [
        ["bar", "bar"], ["scatter"], ["heatmap"]]
    assert charts[0]["bars"] > 0
    assert charts[1]["lines"] == 1
    assert charts[2]["heatmapImages"] == 1


def test_demo_report_over_http_shows_the_map(browser, http_root, colour_pixels, artifacts) -> None:
    page, errors = _open_report(browser, f"{http_root}/report.html")
    try:
        _check_report_map(page, colour_pixels, artifacts / "report-http-map.png",
                          artifacts / "report-http-map-canvas.png")
        _check_report_charts(page)
        page.screenshot(path=str(artifacts / "report-http.png"), full_page=True)
        assert not errors, errors
    finally:
        page.close()


def test_demo_report_from_file_shows_the_map(browser, demo_report, colour_pixels,
                                             artifacts) -> None:
    """Opened from disk, Chromium refuses MapLibre's blob: module worker; the report hands it a
    data: URL instead, so the real map (not the fallback) renders with every marker."""
    page, errors = _open_report(browser, demo_report.as_uri())
    try:
        _check_report_map(page, colour_pixels, artifacts / "report-file-map.png",
                          artifacts / "report-file-map-canvas.png")
        # Past the fallback delay the map is still the one shown.
        page.wait_for_timeout(4500)
        assert page.locator("#tu-map").is_visible()
        assert page.locator("#tu-map-fallback").is_hidden()
        _check_report_charts(page)
        page.screenshot(path=str(artifacts / "report-file.png"), full_page=True)
        assert not errors, errors
    finally:
        page.close()


# A browser where MapLibre's worker cannot start at all: every worker fails to load, as the
# blob: module worker did from file:// before the report worked around it.
_NO_WORKERS = """
(() => {
  const Native = window.Worker;
  window.Worker = function (url, options) {
    return new Native("data:text/javascript,throw new Error('blocked by the test')", options);
  };
  window.Worker.prototype = Native.prototype;
})();
"""


def test_demo_report_falls_back_to_a_positions_chart_where_the_map_cannot_start(
    browser, demo_report, artifacts
) -> None:
    page, _ = _open_report(browser, demo_report.as_uri(), init_script=_NO_WORKERS)
    try:
        page.locator("#tu-map-fallback .scatterlayer .point").first.wait_for(timeout=TIMEOUT_MS)
        assert page.locator("#tu-map").is_hidden()
        assert page.locator("#tu-map-fallback").is_visible()
        fallback = page.evaluate(PLOTS_JS, "#tu-map-fallback")
        assert len(fallback) == 1
        drawn = sum(t["points"] for t in fallback[0]["traces"]
                    if t["mode"] == "markers" and t["visible"] is True)
        assert drawn == fallback[0]["svgPoints"] == _report_machines(page) > 0
        page.locator("#tu-map-fallback").screenshot(path=str(artifacts / "report-fallback.png"))
        _check_report_charts(page)
    finally:
        page.close()

