"""The three notebooks run top to bottom in fast mode (ADAPTER_STUDIO_FAST=1), as a reader would run them."""

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.slow  # the complete tier: each notebook runs end to end

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


@pytest.mark.parametrize("name", ["01_quickstart.ipynb", "02_customer_service_hub.ipynb", "03_experiments.ipynb"])
def test_notebook_runs_in_fast_mode(name, tmp_path, monkeypatch):
    monkeypatch.setenv("ADAPTER_STUDIO_FAST", "1")
    monkeypatch.setenv("ADAPTER_STUDIO_HOME", str(tmp_path))
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOKS)}}).execute()
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors
    assert os.listdir(tmp_path / "notebooks")  # it really trained and wrote its runs
