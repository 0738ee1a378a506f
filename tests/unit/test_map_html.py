from __future__ import annotations

from tu_analytics.widgets import MachineMap


def test_full_page_map_carries_the_file_worker_fix_before_plotly() -> None:
    html = MachineMap().to_html()
    head = html[: html.index("</head>")]
    # The fix must be defined before plotly.js creates MapLibre's worker.
    assert 'location.protocol !== "file:"' in head
    assert html.index("location.protocol") < html.index("PlotlyConfig")


def test_fragment_has_no_page_script() -> None:
    assert "location.protocol" not in MachineMap().to_html(full_html=False, include_plotlyjs=False)
