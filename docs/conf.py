"""Sphinx configuration of the documentation site (``make docs`` -> build/docs/).

Offline by construction: no intersphinx, no remote assets. Math is MathML written at build
time (``_ext/mathml.py``); notebooks are rendered from executed copies (``_ext/notebook_pages.py``);
the API pages come from the docstrings (autodoc + napoleon, module list in ``api.md``).
"""

import re
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE / "_ext"), str(HERE.parent)]

from sphinx.ext import autosummary  # noqa: E402

import fame_utils  # noqa: E402

project = "fame_utils"
author = "fame_utils contributors"
copyright = "2026, fame_utils contributors"
release = version = fame_utils.__version__

extensions = [
    "myst_nb",  # Markdown pages and notebooks (includes myst_parser)
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinxarg.ext",  # the command line, generated from argparse
    "mathml",
    "notebook_pages",
]
exclude_patterns = ["_build", "**.ipynb_checkpoints", "README.md"]
templates_path = ["_templates"]

# --- pages -------------------------------------------------------------------------------
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence", "deflist"]
myst_heading_anchors = 3  # README-style links to #headings resolve on the site
nb_execution_mode = "off"  # notebook_pages.py provides executed copies
nb_ipywidgets_js = {}  # no widget script from a CDN: widgets are made static
nb_merge_streams = True
html_math_renderer = "mathml"

# --- API reference -------------------------------------------------------------------------
autosummary_generate = True
# each object once, where it is defined (a package's __all__ re-exports are not repeated)
autodoc_default_options = {"members": True, "show-inheritance": True, "ignore-module-all": True}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_class_signature = "separated"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False


# The docstrings write absolute values as plain text, |x|, which reStructuredText would read as
# substitution references: escape each | outside backtick spans (code, roles).
_OUTSIDE_BACKTICKS = re.compile(r"(`+[^`]*`+)")


def _escape_bars(app, what, name, obj, options, lines):
    for i, line in enumerate(lines):
        parts = _OUTSIDE_BACKTICKS.split(line)
        lines[i] = "".join(p if k % 2 else p.replace("|", r"\|") for k, p in enumerate(parts))


def _first_paragraph(doc: list[str], document) -> str:
    """The summary autosummary's tables show: the docstring's first paragraph (its default,
    the first sentence, ends at "paper Sec." in half of ours)."""
    lines = [line.strip() for line in doc]
    while lines and not lines[0]:
        lines.pop(0)
    end = lines.index("") if "" in lines else len(lines)
    return " ".join(lines[:end])


autosummary.extract_summary = _first_paragraph


def setup(app):
    app.connect("autodoc-process-docstring", _escape_bars)


# --- HTML ----------------------------------------------------------------------------------
html_theme = "furo"
html_title = f"fame_utils {release}"
html_static_path = []
html_show_sourcelink = False
