"""Run every notebook of notebooks/ from top to bottom and store it with its outputs (`make notebooks`).

Each runs offline in a fresh temporary directory (its models and outputs go there), on the tiny local models it falls
back to without a GPU or the Hub, so the stored outputs are those of a CPU run, as each notebook's introduction says.
The temporary directory's path is written `.` in the outputs and stderr (warnings, progress bars) is left out, so that
no machine path is stored.

    python scripts/run_notebooks.py [notebooks/quick_start.ipynb ...]
"""

import os
import sys
import tempfile
from pathlib import Path

import nbformat
from nbclient import NotebookClient


NOTEBOOKS = Path(__file__).resolve().parent.parent / "notebooks"


def run(path: Path) -> None:
    notebook = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory() as directory:
        os.environ["HF_HUB_OFFLINE"] = "1"  # the kernel inherits it: the tiny local fallbacks, on every machine
        NotebookClient(
            notebook, timeout=1200, kernel_name="python3", resources={"metadata": {"path": directory}}
        ).execute()
        for cell in (cell for cell in notebook.cells if cell.cell_type == "code"):
            # Warnings and progress bars go to stderr: noise to a reader, and they name this machine's paths
            outputs = [output for output in cell.outputs if output.get("name") != "stderr"]
            cell["outputs"] = [_scrub(output, (str(Path(directory).resolve()), directory)) for output in outputs]
    nbformat.write(notebook, path)
    print(f"{path.name}: stored with its outputs")


def _scrub(output: dict, paths: tuple[str, ...]) -> dict:
    def clean(text: str) -> str:
        for prefix in paths:
            text = text.replace(prefix, ".")
        return text

    if "text" in output:
        output["text"] = clean(output["text"])
    for kind, value in output.get("data", {}).items():
        if kind.startswith("text/") and isinstance(value, str):
            output["data"][kind] = clean(value)
    return output


if __name__ == "__main__":
    paths = [Path(argument) for argument in sys.argv[1:]] or sorted(NOTEBOOKS.glob("*.ipynb"))
    for notebook_path in paths:
        run(notebook_path)
