"""Every notebook runs top to bottom (nbclient, kernel python3, cwd notebooks/) and is stored
without outputs."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
TIMEOUT = 600  # seconds per notebook (each is meant to finish in well under 3 minutes)

nbformat = pytest.importorskip("nbformat")


def test_the_tutorial_notebooks_exist():
    assert {
        "01_quickstart.ipynb",
        "02_degree_sweeps.ipynb",
        "03_sparsity_and_cliques.ipynb",
        "04_comparison_certdnn.ipynb",
        "06_deep_networks.ipynb",
        "07_published_tables.ipynb",
    } <= {p.name for p in NOTEBOOKS}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stored_without_outputs(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [], f"{path.name}: a code cell has outputs"
            assert cell.execution_count is None, f"{path.name}: a code cell has an execution count"
    assert nb.metadata["kernelspec"]["name"] == "python3"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_executes(path, tmp_path):
    from nbclient import NotebookClient

    nb = nbformat.read(path, as_version=4)
    client = NotebookClient(nb, timeout=TIMEOUT, kernel_name="python3",
                            resources={"metadata": {"path": str(path.parent)}})
    t0 = time.perf_counter()
    # the notebooks write their tables and figures under tempfile.mkdtemp(): keep them in tmp_path
    client.execute(env={**os.environ, "TMPDIR": str(tmp_path)})
    elapsed = time.perf_counter() - t0
    print(f"{path.name}: {elapsed:.1f} s")
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    # solvers stay silent: no banner or log lines of HiGHS, CVXOPT, SCS … in the cells' outputs
    streams = "".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert "Running HiGHS" not in streams and "pcost" not in streams and "SCS v" not in streams
