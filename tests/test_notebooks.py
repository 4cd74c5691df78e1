"""The notebooks of notebooks/ run from top to bottom on tiny local models, offline, and are kept without outputs."""

from pathlib import Path

import pytest


NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
    assert {path.name for path in NOTEBOOKS} >= {
        "quick_start.ipynb",
        "airl_reward_model.ipynb",
        "real_model_recipe.ipynb",
    }


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_notebook_is_stored_without_outputs_and_opens_in_colab(path):
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(not cell.outputs and cell.execution_count is None for cell in code), "strip the outputs"
    assert (
        f"colab.research.google.com/github/trl-irl/trl-irl/blob/main/notebooks/{path.name}" in notebook.cells[0].source
    )
    assert "google.colab" in code[0].source  # the install cell runs on Colab only


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_notebook_runs(path, tmp_path):
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)
    # Its files (models, outputs) go to a temporary directory; the kernel inherits HF_HUB_OFFLINE from the tests
    NotebookClient(
        notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    errors = [output for cell in notebook.cells for output in cell.get("outputs", []) if output.output_type == "error"]
    assert not errors
