"""Every notebook in notebooks/ runs top to bottom in a real kernel against the sandbox.

The kernel gets the session sandbox's ``TU_*`` variables (the first customer, as after
``eval "$(tu-analytics sandbox env)"``) and runs in a temporary directory, so a notebook that
writes files leaves nothing in the repository. A cell that raises fails the test, and so does
anything written to stderr: that is where warnings land (e.g. jupyter_client's "Message
serialization failed" when a widget sends NaN), and a notebook we ship should run clean.
"""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
CELL_TIMEOUT = 300  # Spark's first session (07-spark) starts its JVM and Python workers
#: Spark's launcher prints this on every JVM start and offers no switch for it.
_JVM_NOTICE = "WARNING: Using incubator modules: jdk.incubator.vector"
MAX_NOTEBOOK_BYTES = 6_000_000


def _kernel_env(extra: dict[str, str]) -> dict[str, str]:
    """The test process's environment without any TU_* variable, plus ``extra``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TU_")}
    return {**env, **extra}


def _execute(nb: nbformat.NotebookNode, cwd: Path, env: dict[str, str], *,
             allow_errors: bool = False) -> nbformat.NotebookNode:
    client = NotebookClient(
        nb,
        timeout=CELL_TIMEOUT,
        kernel_name="python3",
        allow_errors=allow_errors,
        resources={"metadata": {"path": str(cwd)}},
    )
    return client.execute(env=env)


def _stderr(nb: nbformat.NotebookNode) -> list[str]:
    found = []
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream" and out.get("name") == "stderr":
                if out.get("text", "").strip() == _JVM_NOTICE:
                    continue
                found.append(f"cell {i}:\n{''.join(cell.source)}\n--- stderr ---\n{out['text']}")
    return found


def test_there_are_notebooks() -> None:
    assert len(NOTEBOOKS) >= 5


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_runs_clean_against_the_sandbox(path: Path, sandbox, tmp_path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    try:
        _execute(nb, tmp_path, _kernel_env(sandbox.env()))
    except CellExecutionError as exc:
        pytest.fail(f"{path.name} failed:\n{exc}", pytrace=False)
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o.get("output_type") == "error"]
    assert not errors
    stderr = _stderr(nb)
    assert not stderr, f"{path.name} wrote to stderr:\n\n" + "\n\n".join(stderr)
    # Every code cell ran (nothing was skipped) and the files it wrote stayed out of the repo.
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count for c in code)
    # Executed, widget state included, a notebook stays small: figures are stored as data for
    # JupyterLab's plotly renderer, and plotly.js at most once (a live FigureWidget).
    size = len(nbformat.writes(nb).encode())
    print(f"{path.name}: {size / 1e6:.2f} MB after execution")
    assert size <= MAX_NOTEBOOK_BYTES, f"{path.name} is {size / 1e6:.1f} MB after execution"


def test_first_cell_without_settings_says_how_to_start_the_sandbox(tmp_path: Path) -> None:
    """With no TU_* variable and no profile, each notebook's first code cell stops with a
    ConfigurationError that names ``tu-analytics sandbox up``."""
    firsts = [next(c for c in nbformat.read(p, as_version=4).cells if c.cell_type == "code")
              for p in NOTEBOOKS]
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c.source) for c in firsts])
    env = _kernel_env({"TU_PROFILES": str(tmp_path / "no-profiles.toml")})
    _execute(nb, tmp_path, env, allow_errors=True)
    for path, cell in zip(NOTEBOOKS, nb.cells, strict=True):
        errors = [o for o in cell.outputs if o.output_type == "error"]
        assert len(errors) == 1, f"{path.name}: the first cell did not fail: {cell.outputs}"
        assert errors[0].ename == "ConfigurationError", f"{path.name}: {errors[0].ename}"
        assert "tu-analytics sandbox up" in errors[0].evalue, errors[0].evalue
