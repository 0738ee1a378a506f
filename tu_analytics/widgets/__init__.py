"""Notebook views over Machine Insights frames: the machine map and the utilisation charts.

Views take frames (from a window, a snapshot or :class:`tu_analytics.live.LiveTail`), never
settings or consumers. Each is one ipywidgets box whose plotly ``FigureWidget`` s are created once
and updated in place; each also renders as static plotly figures where widgets cannot run.

    from tu_analytics.widgets import MachineMap, UtilisationView
    MachineMap(window.main)                     # shows the widget
    UtilisationView(window.main, tz="Europe/Copenhagen")
"""

from tu_analytics.widgets.map import MachineMap, map_figure, positions_figure
from tu_analytics.widgets.utilisation import UtilisationView, utilisation_figures

__all__ = [
    "MachineMap",
    "UtilisationView",
    "map_figure",
    "positions_figure",
    "utilisation_figures",
]
