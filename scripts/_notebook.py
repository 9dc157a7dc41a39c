"""Shared tail of the scripts/make_notebook_*.py writers: save cells as an output-free notebook."""

from pathlib import Path

import nbformat as nbf


def write_notebook(nb: nbf.NotebookNode, cells: list, name: str) -> Path:
    """Put ``cells`` into ``nb`` with the python3 kernelspec and write notebooks/``name``."""
    nb["cells"] = cells
    nb["metadata"]["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    out = Path(__file__).resolve().parents[1] / "notebooks" / name
    nbf.write(nb, out)
    print("wrote", out)
    return out
