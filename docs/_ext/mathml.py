"""Math as MathML, converted at build time: the pages need no math script and no network.

Sphinx's MathJax renderer loads a script from a CDN (or a local copy we would have to ship);
Chromium, Firefox and Safari render MathML Core natively, so the ``math`` and ``displaymath``
nodes (``:math:``, ``.. math::``, MyST ``$...$``/``$$...$$``, notebook Markdown) are turned
into ``<math>`` elements by ``latex2mathml`` when the HTML is written.
"""

from __future__ import annotations

from docutils import nodes
from latex2mathml.converter import convert
from sphinx.application import Sphinx
from sphinx.util.math import get_node_equation_number


def _inline(self, node: nodes.Element) -> None:
    self.body.append(f'<span class="math notranslate">{convert(node.astext())}</span>')
    raise nodes.SkipNode


def _block(self, node: nodes.Element) -> None:
    self.body.append(self.starttag(node, "div", CLASS="math notranslate"))
    if node["number"]:
        self.body.append(f'<span class="eqno">({get_node_equation_number(self, node)})</span>')
    self.body.append(convert(node.astext(), display="block"))
    self.body.append("</div>\n")
    raise nodes.SkipNode


def setup(app: Sphinx) -> dict:
    app.add_html_math_renderer("mathml", (_inline, None), (_block, None))
    return {"parallel_read_safe": True, "parallel_write_safe": True}
