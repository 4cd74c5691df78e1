"""The notebooks of notebooks/ run from top to bottom on tiny local models, offline, and are stored with the outputs of
such a run (`make notebooks`), labelled as such, so that a reader on GitHub sees what each cell gives."""

from pathlib import Path

import pytest


NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
    assert {path.name for path in NOTEBOOKS} >= {
        "quick_start.ipynb",
        "airl_reward_model.ipynb",
        "real_model_recipe.ipynb",
    }


# What a stored output must not hold: this machine's paths (`scripts/run_notebooks.py` leaves stderr out, writes `.`)
MACHINE_PATHS = ("/tmp/", "/work/", "/home/", "site-packages", "C:\\")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[path.stem for path in NOTEBOOKS])
def test_notebook_is_stored_with_the_outputs_of_a_whole_run_and_opens_in_colab(path):
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    # Run once from top to bottom, every cell in order, by `make notebooks`: no cell edited since or run out of order
    assert [cell.execution_count for cell in code] == list(range(1, len(code) + 1)), "run `make notebooks`"
    outputs = [output for cell in code for output in cell.outputs]
    assert outputs and not [output for output in outputs if output.output_type == "error"]
    stored = nbformat.writes(notebook)
    assert [marker for marker in MACHINE_PATHS if marker in stored] == []
    assert "outputs below are from a run" in notebook.cells[0].source  # labelled: tiny models, a CPU
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
