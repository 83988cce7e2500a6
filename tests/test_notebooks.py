"""The Colab notebooks: generated from notebooks/_build.py, committed without
outputs, and executed end to end in quick mode (``QUICK = True`` injected after
the cell tagged ``parameters``, as papermill does)."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
NAMES = ("01_quickstart", "02_ph2_unet_vs_segnet", "03_body_segmentation_mads")

_spec = importlib.util.spec_from_file_location("notebooks_build", NOTEBOOKS / "_build.py")
_build = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_build)
COLAB = _build.COLAB_URL.replace("{name}", "{}")  # the repository is named once, in the generator


def read(name):
    return nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)


def test_committed_notebooks_match_their_generator():
    result = subprocess.run([sys.executable, str(NOTEBOOKS / "_build.py"), "--check"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("name", NAMES)
def test_notebook_has_badge_parameters_and_no_outputs(name):
    notebook = read(name)
    nbformat.validate(notebook)
    assert COLAB.format(name) in notebook.cells[0].source
    tagged = [c for c in notebook.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(tagged) == 1 and "QUICK = False" in tagged[0].source
    for cell in notebook.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None


def with_quick_mode(notebook):
    """A copy with ``QUICK = True`` in a cell right after the ``parameters`` cell."""
    notebook = nbformat.from_dict(notebook)
    index = next(i for i, c in enumerate(notebook.cells) if "parameters" in c.metadata.get("tags", []))
    injected = nbformat.v4.new_code_cell("QUICK = True", metadata={"tags": ["injected-parameters"]})
    notebook.cells.insert(index + 1, injected)
    return notebook


def printed(notebook) -> str:
    return "".join(
        output.get("text", "")
        for cell in notebook.cells if cell.cell_type == "code"
        for output in cell.outputs if output.output_type == "stream"
    )


@pytest.mark.slow
@pytest.mark.notebooks
@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_in_quick_mode(name, tmp_path, monkeypatch):
    from nbclient import NotebookClient

    # The kernel inherits this environment: quiet TensorFlow, and no real data sets, so the
    # data notebooks take (and announce) their synthetic fallback.
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "2")
    monkeypatch.setenv("PH2_PATH", str(tmp_path / "no-ph2"))
    monkeypatch.setenv("MADS_PATH", str(tmp_path / "no-mads"))
    notebook = with_quick_mode(read(name))
    client = NotebookClient(notebook, kernel_name="python3", timeout=600,
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()  # raises CellExecutionError, with the failing cell, on any error

    text = printed(notebook)
    images = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs
              if "image/png" in o.get("data", {})]
    assert images, "the notebook showed no picture"
    if name.startswith("02"):
        assert "PH2 not found" in text and "U-Net - SegNet: " in text and "95% interval" in text
        assert {"comparison.png", "dice_histogram.png", "best_worst_unet.png", "best_worst_segnet.png",
                "compare.json"} <= {p.name for p in tmp_path.iterdir()}
    if name.startswith("03"):
        assert "MADS not found" in text and (tmp_path / "chroma_key.png").is_file()
    if name.startswith("01"):
        assert (tmp_path / "export" / "unet" / "1" / "saved_model.pb").is_file()
        assert (tmp_path / "runs" / "unet-quickstart" / "metrics.json").is_file()
