"""Notebooks are committed clean: no outputs, no execution counts, no saved widget state.

Outputs in the repository go stale, bloat diffs and can carry data (or secrets) from whoever ran
them last; tests/integration/test_notebooks.py runs every notebook instead.
"""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[2]
_SKIP = {".venv", "venv", ".git", "node_modules", ".ipynb_checkpoints", "build", "dist",
         "artifacts", ".cache", ".pytest_cache", ".mypy_cache", ".ruff_cache"}


def _notebooks() -> list[Path]:
    found = []
    for folder, dirs, files in os.walk(ROOT):
        dirs[:] = [d for d in dirs if d not in _SKIP]  # never descend into .venv and friends
        found += [Path(folder) / f for f in files if f.endswith(".ipynb")]
    return sorted(found)


NOTEBOOKS = _notebooks()


def test_the_shipped_notebooks_are_found() -> None:
    assert {p.relative_to(ROOT).parts[0] for p in NOTEBOOKS} >= {"notebooks"}
    assert len([p for p in NOTEBOOKS if p.parent.name == "notebooks"]) >= 5


@pytest.mark.parametrize(
    "path", NOTEBOOKS, ids=[str(p.relative_to(ROOT)) for p in NOTEBOOKS]
)
def test_notebook_is_valid_and_holds_no_outputs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    dirty = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "code":
            continue
        if cell.get("outputs"):
            dirty.append(f"cell {i} has {len(cell.outputs)} output(s)")
        if cell.get("execution_count") is not None:
            dirty.append(f"cell {i} has execution_count {cell.execution_count}")
    if "widgets" in nb.metadata:
        dirty.append("the notebook metadata holds saved widget state")
    assert not dirty, f"{path.relative_to(ROOT)}: " + "; ".join(dirty)
