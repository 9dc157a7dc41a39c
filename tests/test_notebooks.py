"""Notebooks are committed clean and thin, and each runs headless in its fast setting.

The ``.ipynb`` files are the source (edited in JupyterLab, linted by ``ruff``); these checks
keep them output-free, free of library code (no ``def``/``class``/``lambda``: that belongs
in ``fame_utils``), short, and parametrisable by papermill.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from run_notebooks import execute, notebooks  # noqa: E402

# The fast setting of each notebook: same code path, tiny budgets.
FAST = {
    "01_gaussian_blur.ipynb": {"iterations": 3, "n_images": 2, "explore_iterations": 3},
    "02_receptive_fields.ipynb": {"iterations": 2, "n_images": 1, "cells_per_layer": 2},
    # one pair per network: FGGB's 512 FaceNet backward passes per pair cost the same at any budget
    "03_face_comparisons.ipynb": {"iterations": 3, "n_masks": 16, "rows": [["pose", "pose", 2]]},
    "04_face_metrics.ipynb": {
        "iterations": 3,
        "n_masks": 16,
        "max_pairs": 2,
        "subsets": ["pose"],
        "fine_percents": [0, 5, 10, 50, 100],
    },
    "05_imagenet_metrics.ipynb": {"iterations": 3, "max_images": 3, "road_percents": [30]},
    "06_transformers.ipynb": {
        "iterations": 3,
        "n_images": 4,
        "n_show": 2,
        "cell_iterations": 2,
        "cell_images": 1,
        "cells_per_layer": 2,
        "cnn_cells": 1,
    },
    "07_grid_pointing.ipynb": {"iterations": 2, "n_grids": 1, "networks": ["efficientnet_lite0"]},
}
# notebooks that keep a run cache: point it into the test's temporary folder
CACHED = {
    "04_face_metrics.ipynb",
    "05_imagenet_metrics.ipynb",
    "06_transformers.ipynb",
    "07_grid_pointing.ipynb",
}


# Code lines per notebook: lines of the code cells other than the parameters cell (settings),
# not counting blank lines, comments and imports; what is left should be calls into
# fame_utils and display.
MAX_CODE_LINES = 60


def _is_code_line(line: str) -> bool:
    text = line.strip()
    return bool(text) and not text.startswith(("#", "import ", "from "))


def notebook_problems(nb: nbformat.NotebookNode, max_code_lines: int = MAX_CODE_LINES) -> list[str]:
    """What keeps ``nb`` from being a committable notebook (empty list: nothing)."""
    problems = []
    code = [c for c in nb.cells if c.cell_type == "code"]
    tagged = [i for i, c in enumerate(nb.cells) if "parameters" in c.metadata.get("tags", [])]
    if len(tagged) != 1:
        problems.append(f"needs exactly one cell tagged 'parameters', found {len(tagged)}")
    for i, c in enumerate(nb.cells):
        if c.cell_type != "code":
            continue
        if c.get("outputs") or c.get("execution_count") is not None:
            problems.append(
                f"cell {i} has outputs or an execution count: clear them before committing"
            )
        try:
            tree = ast.parse(c.source)
        except SyntaxError as err:
            problems.append(f"cell {i} is not valid Python: {err}")
            continue
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
                what = type(node).__name__.replace("Def", "").lower()
                problems.append(
                    f"cell {i} line {node.lineno} defines a {what}: move it into fame_utils"
                )
    lines = sum(
        1
        for c in code
        if "parameters" not in c.metadata.get("tags", [])
        for line in c.source.splitlines()
        if _is_code_line(line)
    )
    if lines > max_code_lines:
        problems.append(f"{lines} code lines (at most {max_code_lines}): move code into fame_utils")
    return problems


@pytest.mark.parametrize("path", notebooks(), ids=lambda p: p.name)
def test_committed_notebook_is_clean_and_thin(path):
    problems = notebook_problems(nbformat.read(path, as_version=4))
    assert not problems, f"{path.name}: " + "; ".join(problems)


def test_the_notebook_check_catches_each_problem():
    v4 = nbformat.v4
    good = v4.new_notebook(
        cells=[
            v4.new_code_cell("n = 3", metadata={"tags": ["parameters"]}),
            v4.new_code_cell("print(n)"),
        ]
    )
    assert notebook_problems(good) == []
    bad = v4.new_notebook(
        cells=[
            v4.new_code_cell("n = 3"),
            v4.new_code_cell(
                "def f():\n    return 1\nclass C: ...\ng = lambda: 2",
                execution_count=4,
                outputs=[v4.new_output("stream", text="x")],
            ),
            v4.new_code_cell(
                "import os\nfrom pathlib import Path\n\n# note\n"
                + "\n".join(f"x{i} = {i}  # set" for i in range(5))
            ),
        ]
    )
    problems = notebook_problems(bad, max_code_lines=7)
    assert problems[0] == "needs exactly one cell tagged 'parameters', found 0"
    assert "cell 1 has outputs" in problems[1]
    assert [p.split(" defines a ")[1].split(":")[0] for p in problems[2:5]] == [
        "function",
        "class",
        "lambda",
    ]
    # 1 + 4 + 5: imports, comments and blank lines are not counted
    assert problems[5].startswith("10 code lines (at most 7)")
    assert len(problems) == 6


def test_every_notebook_has_a_fast_setting():
    missing = [p.name for p in notebooks() if p.name not in FAST]
    assert not missing, f"add a fast parameter setting to tests/test_notebooks.py for {missing}"


@pytest.mark.slow
@pytest.mark.notebook
@pytest.mark.parametrize("path", notebooks(), ids=lambda p: p.name)
def test_notebook_runs_headless(path, tmp_path):
    params = dict(FAST[path.name], figures_dir=str(tmp_path / "figures"))
    if path.name in CACHED:
        params.update(cache_dir=str(tmp_path / "cache"), out_dir=str(tmp_path / "out"))
    execute(path, params, tmp_path / "executed", cell_timeout=300)
    written = sorted(p.name for p in (tmp_path / "figures").iterdir())
    assert any(n.endswith(".png") for n in written), f"{path.name} wrote no figure: {written}"
