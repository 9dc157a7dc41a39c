"""Execute every notebook headless in its fast parameter setting (papermill)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
from run_notebooks import execute, notebooks  # noqa: E402

# The fast setting of each notebook: same code path, tiny budgets.
FAST = {
    "01_gaussian_blur.ipynb": {"iterations": 3, "n_images": 2},
    "02_receptive_fields.ipynb": {"iterations": 2, "n_images": 1, "cells_per_layer": 2},
    "03_face_comparisons.ipynb": {"iterations": 3, "n_masks": 16},
    "04_face_metrics.ipynb": {"iterations": 3, "n_masks": 16, "max_pairs": 2},
    "05_imagenet_metrics.ipynb": {"iterations": 3, "max_images": 3},
}
# notebooks that keep a run cache: point it into the test's temporary folder
CACHED = {"04_face_metrics.ipynb", "05_imagenet_metrics.ipynb"}


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
