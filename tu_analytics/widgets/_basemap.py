"""The shipped Natural Earth base layer as plotly traces: land, coastlines, borders, city labels.

It needs no network and no WebGL, so a map has context offline, in a ``file://`` page, in
nbviewer and in a headless browser. The default map draws it on plain axes in a Web Mercator
projection (:func:`project`); tile styles draw the same traces on the MapLibre map, under the
tiles' markers, so a style whose tiles cannot load still shows land and borders.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

import numpy as np

from tu_analytics.sites import base_layer

__all__ = [
    "LAND",
    "WATER",
    "Bounds",
    "layer_arrays",
    "project",
    "tile_layers",
    "tile_style",
    "trace_styles",
]

LAND = "#f2efe6"
WATER = "#dde8f0"
_COAST = "#9db4c4"
_BORDER = "#b3aa9c"
_MAX_LAT = 85.0


@dataclass(frozen=True, slots=True)
class Bounds:
    """A longitude/latitude box (degrees)."""

    lon0: float
    lon1: float
    lat0: float
    lat1: float

    def grown(self, factor: float) -> Bounds:
        dx = (self.lon1 - self.lon0) * factor / 2
        dy = (self.lat1 - self.lat0) * factor / 2
        return Bounds(
            max(self.lon0 - dx, -180.0),
            min(self.lon1 + dx, 180.0),
            max(self.lat0 - dy, -_MAX_LAT),
            min(self.lat1 + dy, _MAX_LAT),
        )


WORLD = Bounds(-180.0, 180.0, -60.0, _MAX_LAT)


def project(lat: Any) -> np.ndarray[Any, Any]:
    """Web Mercator y of ``lat`` in degree-like units (so x = longitude keeps shapes true)."""
    phi = np.radians(np.clip(np.asarray(lat, dtype=float), -_MAX_LAT, _MAX_LAT))
    out: np.ndarray[Any, Any] = np.degrees(np.log(np.tan(np.pi / 4 + phi / 2)))
    return out


@dataclass(frozen=True, slots=True)
class _Lines:
    """Polylines with their bounding boxes, for a quick "which touch the view" test."""

    lines: tuple[np.ndarray[Any, Any], ...]
    boxes: np.ndarray[Any, Any]  # (n, 4): lon0, lon1, lat0, lat1


def _lines(flat: list[list[float]]) -> _Lines:
    arrays = tuple(np.asarray(f, dtype=float).reshape(-1, 2) for f in flat)
    boxes = np.array(
        [[a[:, 0].min(), a[:, 0].max(), a[:, 1].min(), a[:, 1].max()] for a in arrays]
    ).reshape(-1, 4)
    return _Lines(arrays, boxes)


@cache
def _scale(scale: str, kind: str) -> _Lines:
    scales = base_layer()["scales"]
    assert isinstance(scales, dict)
    return _lines(scales[scale][kind])


def _touching(lines: _Lines, view: Bounds) -> list[np.ndarray[Any, Any]]:
    b = lines.boxes
    hit = (
        (b[:, 1] >= view.lon0)
        & (b[:, 0] <= view.lon1)
        & (b[:, 3] >= view.lat0)
        & (b[:, 2] <= view.lat1)
    )
    return [lines.lines[i] for i in np.flatnonzero(hit)]


def _clip_edge(ring: np.ndarray[Any, Any], axis: int, bound: float, keep_below: bool) -> Any:
    """One Sutherland-Hodgman step: ``ring`` (closed, n×2) clipped to one half-plane."""
    if len(ring) == 0:
        return ring
    v = ring[:, axis]
    inside = v <= bound if keep_below else v >= bound
    nxt = np.roll(ring, -1, axis=0)
    nxt_inside = np.roll(inside, -1)
    out: list[np.ndarray[Any, Any]] = []
    for i in np.flatnonzero(inside | nxt_inside):
        a, b = ring[i], nxt[i]
        if inside[i]:
            out.append(a)
        if inside[i] != nxt_inside[i]:
            t = (bound - a[axis]) / (b[axis] - a[axis])
            out.append(a + t * (b - a))
    return np.array(out).reshape(-1, 2)


def _clipped(ring: np.ndarray[Any, Any], view: Bounds) -> np.ndarray[Any, Any]:
    """``ring`` clipped to ``view``: a continent's outline shrinks to the part that is seen."""
    if (
        ring[:, 0].min() >= view.lon0
        and ring[:, 0].max() <= view.lon1
        and ring[:, 1].min() >= view.lat0
        and ring[:, 1].max() <= view.lat1
    ):
        return ring
    for axis, bound, below in (
        (0, view.lon0, False),
        (0, view.lon1, True),
        (1, view.lat0, False),
        (1, view.lat1, True),
    ):
        ring = _clip_edge(ring, axis, bound, below)
    return ring if len(ring) == 0 else np.vstack([ring, ring[:1]])


def _joined(parts: list[np.ndarray[Any, Any]]) -> tuple[list[float | None], list[float | None]]:
    """Lines joined into one trace, separated by gaps (one trace draws them all)."""
    lons: list[float | None] = []
    lats: list[float | None] = []
    for part in parts:
        lons += [*part[:, 0].tolist(), None]
        lats += [*part[:, 1].tolist(), None]
    return lons, lats


def layer_arrays(view: Bounds) -> dict[str, tuple[list[Any], list[Any], list[str]]]:
    """``land``, ``borders`` and ``places`` as (lons, lats, texts) for the traces in ``view``.

    Wide views use the 1:110m scale, regional ones 1:50m (finer coasts).
    """
    scale = "110m" if view.lon1 - view.lon0 > 60 else "50m"
    rings = (_clipped(r, view) for r in _touching(_scale(scale, "land"), view))
    land = _joined([np.round(r, 3) for r in rings if len(r) >= 4])
    borders = _joined(_touching(_scale(scale, "borders"), view))
    rows = base_layer()["places"]
    assert isinstance(rows, list)
    inside = [
        (name, lon, lat)
        for name, lon, lat in rows
        if view.lon0 <= lon <= view.lon1 and view.lat0 <= lat <= view.lat1
    ]
    return {
        "land": (land[0], land[1], []),
        "borders": (borders[0], borders[1], []),
        "places": ([p[1] for p in inside], [p[2] for p in inside], [p[0] for p in inside]),
    }


def trace_styles() -> dict[str, dict[str, Any]]:
    """Fixed styles of the three base-layer traces (shared by both map kinds)."""
    common = {"hoverinfo": "skip", "showlegend": False}
    return {
        "land": {
            **common,
            "name": "land",
            "mode": "lines",
            "fill": "toself",
            "fillcolor": LAND,
            "line": {"color": _COAST, "width": 0.8},
        },
        "borders": {
            **common,
            "name": "borders",
            "mode": "lines",
            "line": {"color": _BORDER, "width": 0.8},
        },
        "places": {
            **common,
            "name": "cities",
            "mode": "markers+text",
            "textposition": "top center",
            "marker": {"size": 4, "color": "#6b6b6b"},
            "textfont": {"size": 11, "color": "#555"},
        },
    }


# Raster tiles of the named plotly styles. Their vector styles load a style document first; when
# it cannot load, MapLibre draws nothing at all (markers included). An inline style whose only
# network part is a raster source still draws everything else when the tiles fail.
_TILES: dict[str, tuple[str, str]] = {
    "open-street-map": (
        "https://tile.openstreetmap.org/{z}/{x}/{y}.png",
        "© OpenStreetMap contributors",
    ),
    "carto-positron": (
        "https://basemaps.cartocdn.com/light_all/{z}/{x}/{y}.png",
        "© OpenStreetMap contributors © CARTO",
    ),
    "carto-darkmatter": (
        "https://basemaps.cartocdn.com/dark_all/{z}/{x}/{y}.png",
        "© OpenStreetMap contributors © CARTO",
    ),
}


def _geojson(kind: str, closed: bool) -> dict[str, Any]:
    lines = _scale("110m", kind).lines
    geometry = (
        (lambda a: {"type": "Polygon", "coordinates": [a.tolist()]})
        if closed
        else (lambda a: {"type": "LineString", "coordinates": a.tolist()})
    )
    return {
        "type": "FeatureCollection",
        "features": [{"type": "Feature", "properties": {}, "geometry": geometry(a)} for a in lines],
    }


def tile_layers(map_style: str | dict[str, Any]) -> list[dict[str, Any]]:
    """The provider's raster tiles as a plotly map layer (under the traces), for named styles.

    A layer, not part of the style: plotly gives up on a map whose style reports an error
    before the map has loaded (a tile that cannot be fetched does), markers included; layers
    are added after the traces, so failing tiles then only leave the base layer visible.
    """
    if not isinstance(map_style, str) or map_style not in _TILES:
        return []
    url, attribution = _TILES[map_style]
    return [
        {
            "sourcetype": "raster",
            "source": [url],
            "sourceattribution": attribution,
            "below": "traces",
        }
    ]


def tile_style(map_style: str | dict[str, Any]) -> str | dict[str, Any]:
    """The MapLibre style for ``map_style``: for the named tile styles, an inline style with the
    Natural Earth base layer (1:110m) and no network part (the tiles come as
    :func:`tile_layers`); other styles unchanged."""
    if not isinstance(map_style, str) or map_style not in _TILES:
        return map_style
    return {
        "version": 8,
        # Text (city labels, site counts) needs glyphs; without the network they do not load
        # and only the text is missing.
        "glyphs": "https://fonts.openmaptiles.org/{fontstack}/{range}.pbf",
        "sources": {
            "land": {"type": "geojson", "data": _geojson("land", closed=True)},
            "borders": {"type": "geojson", "data": _geojson("borders", closed=False)},
        },
        "layers": [
            {"id": "water", "type": "background", "paint": {"background-color": WATER}},
            {"id": "land", "type": "fill", "source": "land", "paint": {"fill-color": LAND}},
            {
                "id": "coast",
                "type": "line",
                "source": "land",
                "paint": {"line-color": _COAST, "line-width": 0.8},
            },
            {
                "id": "borders",
                "type": "line",
                "source": "borders",
                "paint": {"line-color": _BORDER, "line-width": 0.8},
            },
        ],
    }
