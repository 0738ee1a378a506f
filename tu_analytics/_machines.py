"""``machines=``: which machines a name means. Pure functions over a window's ``main`` frame.

People name machines two ways: Trackunit's machine id (a UUID) and the customer's own
EquipmentID (``"EX-001"``, what the widgets show). Both are accepted, case-insensitively.
A name that matches no machine in the window is reported with its close matches, so a
typo in a UUID is not a silent empty frame.
"""

from __future__ import annotations

import difflib
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field

import polars as pl

from .errors import UnknownMachineWarning

#: Columns a name may match, by format: the machine id first, then the customer's name.
NAME_COLUMNS = {"MachineId": ("MachineId", "EquipmentID"), "machineId": ("machineId",)}


@dataclass(frozen=True)
class Resolution:
    """The machine ids the names meant, the names that meant none, and their close matches."""

    ids: frozenset[str]
    unknown: tuple[str, ...] = ()
    close: dict[str, list[str]] = field(default_factory=dict)


def known_names(main: pl.DataFrame, id_col: str) -> dict[str, set[str]]:
    """Every id and name in the frame (upper-cased) -> the machine ids it belongs to."""
    cols = [c for c in NAME_COLUMNS.get(id_col, (id_col,)) if c in main.columns]
    out: dict[str, set[str]] = {}
    for col in cols:
        pairs = main.select(pl.col(id_col), pl.col(col).alias("_name")).drop_nulls().unique()
        for mid, name in pairs.iter_rows():
            out.setdefault(str(name).strip().upper(), set()).add(mid)
    return out


def resolve(requested: Iterable[str], names: dict[str, set[str]]) -> Resolution:
    """Map each requested id or name to machine ids; collect close matches for the rest."""
    ids: set[str] = set()
    unknown: list[str] = []
    for name in requested:
        hit = names.get(name.strip().upper())
        if hit:
            ids |= hit
        else:
            unknown.append(name)
    close = {n: _close(n, names) for n in unknown}
    # Sorted: ``requested`` may be a set, and a warning should read the same every run.
    return Resolution(frozenset(ids), tuple(sorted(unknown)), close)


def _close(name: str, names: dict[str, set[str]]) -> list[str]:
    # Suggest as the user wrote them: upper-case is only the matching key.
    matches = difflib.get_close_matches(name.strip().upper(), list(names), n=3, cutoff=0.6)
    return [m.lower() if _looks_like_uuid(m) else m for m in matches]


def _looks_like_uuid(text: str) -> bool:
    return len(text) == 36 and text.count("-") == 4


def select(main: pl.DataFrame, requested: Iterable[str], id_col: str,
           *, stacklevel: int = 2) -> pl.DataFrame:
    """The rows of ``main`` whose machine is named in ``requested`` (ids or EquipmentIDs),
    warning :class:`UnknownMachineWarning` for names that match no machine."""
    res = resolve(list(requested), known_names(main, id_col))
    if res.unknown:
        warnings.warn(UnknownMachineWarning(res.unknown, res.close), stacklevel=stacklevel)
    return main.filter(pl.col(id_col).is_in(sorted(res.ids)))
