"""A Plotly FigureWidget whose 5 MB of JavaScript is evaluated once per page, not once per figure.

Plotly's FigureWidget is an anywidget: each instance ships plotly.js as its own ES module, and
the browser evaluates it anew for every figure. anywidget gives a model 2 s to initialize, so a
dashboard of seven figures on a busy two-core machine loses some of them ("[anywidget] Failed
to initialize model."). This subclass's module is a small loader: the first figure on the page
evaluates the bundle (shipped in a trait of its own), every other figure reuses it, and the
loader returns from ``initialize`` at once, finishing the set-up before the first render.
"""

from __future__ import annotations

from copy import deepcopy
from functools import cache
from pathlib import Path

import plotly
import plotly.graph_objects as go
import traitlets

_LOADER = """
const KEY = Symbol.for("workbench.plotly-widget-bundle");
function bundle(model) {
  globalThis[KEY] ??= import(URL.createObjectURL(
    new Blob([model.get("_bundle")], { type: "text/javascript" })));
  return globalThis[KEY];
}
export default () => {
  let inner;
  let ready;
  return {
    initialize({ model }) {
      ready = bundle(model).then((mod) => {
        inner = mod.default();
        inner.initialize({ model });
      });
    },
    async render(view) {
      await ready;
      return inner.render(view);
    },
  };
};
"""


@cache
def _bundle() -> str:
    return (Path(plotly.__file__).parent / "package_data" / "widgetbundle.js").read_text(
        encoding="utf-8"
    )


class FigureWidget(go.FigureWidget):
    """``plotly.graph_objects.FigureWidget``, loaded once per page (see the module's docstring)."""

    _esm = _LOADER
    _bundle = traitlets.Unicode().tag(sync=True)

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._bundle = _bundle()

    def sync_state(self) -> None:
        """Send the whole figure as the widget's state, as plotly does when a figure is shown:
        a view that initializes after an update (a page opened later, a slow browser) then
        starts from the figure as it is rather than from an empty one."""
        self._widget_layout = deepcopy(self._layout_obj._props)
        self._widget_data = deepcopy(self._data)
