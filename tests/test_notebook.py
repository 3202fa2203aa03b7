"""The notebook launcher (notebooks/train_on_a_gpu.ipynb) runs unchanged on the built-in faces.

As papermill does, the test adds one cell after the cell tagged ``parameters`` that sets the
built-in data, the quick preset, one epoch and a small share of the faces; everything else runs
as a user runs it. The run lands in the test's own ``FERLAB_RUNS_DIR`` (see conftest.py).
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import nbformat
import numpy as np
import pytest
from nbclient import NotebookClient

from fertools.constants import FER2013_CLASSES

NOTEBOOK = Path(__file__).resolve().parent.parent / "notebooks" / "train_on_a_gpu.ipynb"
RUN_NAME = "ci-notebook"
SMOKE_PARAMETERS = f"""
PRESET = "quick"
DATA = "builtin"
EPOCHS = 1
FRACTION = 0.03
RUN_NAME = "{RUN_NAME}"
"""


def read_notebook() -> nbformat.NotebookNode:
    return nbformat.read(NOTEBOOK, as_version=4)


def with_parameters(notebook: nbformat.NotebookNode, source: str) -> nbformat.NotebookNode:
    """The notebook with an ``injected-parameters`` cell after its ``parameters`` cell."""
    (index,) = [i for i, cell in enumerate(notebook.cells) if "parameters" in cell.metadata.get("tags", [])]
    cell = nbformat.v4.new_code_cell(source.strip(), metadata={"tags": ["injected-parameters"]})
    notebook.cells.insert(index + 1, cell)
    return notebook


def outputs_text(notebook: nbformat.NotebookNode) -> str:
    texts = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            texts.append(output.get("text", ""))
            texts.append(output.get("data", {}).get("text/plain", ""))
    return "\n".join(texts)


def test_the_notebook_is_clean_and_guards_every_colab_only_step():
    notebook = read_notebook()
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")
    parameters = [cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", [])]
    assert len(parameters) == 1 and 'PRESET = "default"' in parameters[0].source
    colab_cells = [cell.source for cell in notebook.cells if "google.colab" in cell.source]
    assert len(colab_cells) >= 3  # the check itself, the upload, the download
    for source in colab_cells:
        lines = source.splitlines()
        for number, line in enumerate(lines):
            if "from google.colab" in line:
                # Colab-only imports sit inside an ``if IN_COLAB ...:`` block.
                indent = len(line) - len(line.lstrip())
                above = [
                    text
                    for text in lines[:number]
                    if text.strip() and len(text) - len(text.lstrip()) < indent
                ]
                assert above and above[-1].lstrip().startswith("if IN_COLAB"), line
    # Cloning and installing happen only in Colab; elsewhere the notebook uses its own checkout.
    (install,) = [source for source in colab_cells if '"clone"' in source]
    colab_branch = install.split("\nif IN_COLAB:\n", 1)[1].split("\nelse:\n", 1)[0]
    assert '"clone"' in colab_branch and '"pip", "install"' in colab_branch


@pytest.mark.slow
def test_the_notebook_trains_and_writes_a_model_folder_the_app_loads(ferlab_dirs):
    from fertools.modelcard import load_model_dir
    from fertools.runs import RunDir

    notebook = with_parameters(read_notebook(), SMOKE_PARAMETERS)
    client = NotebookClient(
        notebook, timeout=150, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    )
    client.execute()

    run_dir = ferlab_dirs["runs"] / RUN_NAME
    model, card = load_model_dir(run_dir / "model")
    assert tuple(card.classes) == FER2013_CLASSES
    assert card.training["config"]["epochs"] == 1
    assert card.dataset["source"] == "builtin" and card.dataset["synthetic"]
    probabilities = model.predict(np.zeros((2, 48, 48, 1), np.float32), verbose=0)
    assert probabilities.shape == (2, len(FER2013_CLASSES))
    assert RunDir(run_dir).read_status()["state"] == "finished"

    with zipfile.ZipFile(run_dir.with_suffix(".zip")) as archive:
        names = set(archive.namelist())
    assert {
        f"{RUN_NAME}/model/model.keras",
        f"{RUN_NAME}/model/card.json",
        f"{RUN_NAME}/config.json",
    } <= names
    assert not any(name.startswith(f"{RUN_NAME}/checkpoint/") for name in names)

    text = outputs_text(notebook)
    assert "epoch 1/1:" in text
    assert f"the model folder is {run_dir / 'model'}" in text


def test_an_unknown_preset_stops_the_notebook_with_one_sentence(ferlab_dirs):
    from nbclient.exceptions import CellExecutionError

    notebook = with_parameters(read_notebook(), SMOKE_PARAMETERS + 'PRESET = "no-such-preset"\n')
    client = NotebookClient(
        notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    )
    with pytest.raises(CellExecutionError, match="Unknown preset 'no-such-preset'; choose one of"):
        client.execute()
    assert not (ferlab_dirs["runs"] / RUN_NAME).exists()
