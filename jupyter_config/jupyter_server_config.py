"""Jupyter server settings of this project (``make lab`` puts this folder on
``JUPYTER_CONFIG_PATH``): notebooks are saved without outputs.

The notebooks are their own source and are committed output-free; JupyterLab's save and
autosave would otherwise write figures, widget state ("Error displaying widget: model not
found" on reopening) and execution counts into ``notebooks/*.ipynb``. The pre-save hook
clears them in the saved file only; the open notebook keeps its outputs on screen.
"""


def strip_outputs(model, **kwargs):
    """Pre-save hook: clear code cells' outputs and execution counts, and the saved widget
    state and execution timing, of a notebook model (other files pass unchanged)."""
    if model.get("type") != "notebook" or model.get("content") is None:
        return
    content = model["content"]
    for cell in content.get("cells", []):
        cell.get("metadata", {}).pop("execution", None)
        if cell.get("cell_type") == "code":
            cell["outputs"] = []
            cell["execution_count"] = None
    content.get("metadata", {}).pop("widgets", None)


c = get_config()  # noqa: F821 (defined by Jupyter when it loads this file)
c.ContentsManager.pre_save_hook = strip_outputs
