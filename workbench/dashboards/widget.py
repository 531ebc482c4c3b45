"""Plotly's FigureWidget, its 5 MB of JavaScript evaluated once per page rather than once per figure.

``plotly.graph_objects.FigureWidget`` is an anywidget whose ES module is plotly's whole widget
bundle; the browser evaluates it anew for every figure. anywidget gives each model 2 s to load
its module and initialize, and Voilà creates all seven figures of a dashboard at once: on a busy
two-core machine the last ones miss that limit ("[anywidget] Failed to initialize model."), and
such a model then drops every update from the kernel. So this subclass's module is a small
loader. The bundle (plotly's own file, unchanged) is part of each figure's *first* state, the
first figure on the page evaluates it, every other reuses it, and ``initialize`` returns at once
(rendering waits for the bundle instead).
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
function bundle(code) {
  if (!code) throw new Error("workbench FigureWidget: plotly's bundle is missing from the state");
  globalThis[KEY] ??= import(URL.createObjectURL(new Blob([code], { type: "text/javascript" })));
  return globalThis[KEY];
}
export default () => {
  let inner;
  let ready;
  return {
    initialize({ model }) {
      ready = bundle(model.get("_bundle")).then((mod) => {
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
def plotly_bundle() -> str:
    """plotly's widget bundle: the module ``plotly.graph_objects.FigureWidget`` ships."""
    return (Path(plotly.__file__).parent / "package_data" / "widgetbundle.js").read_text(
        encoding="utf-8"
    )


class FigureWidget(go.FigureWidget):
    """``plotly.graph_objects.FigureWidget``, loaded once per page (see the module's docstring)."""

    _esm = _LOADER
    _bundle = traitlets.Unicode().tag(sync=True)

    @traitlets.default("_bundle")
    def _default_bundle(self) -> str:
        # A default, not an assignment after __init__: the comm opens with it in the state.
        return plotly_bundle()

    def sync_state(self) -> None:
        """Send the whole figure as the widget's state, as plotly does when a figure is shown:
        a view that initializes after an update (a page opened later, a slow browser) then
        starts from the figure as it is rather than from an empty one."""
        self._widget_layout = deepcopy(self._layout_obj._props)
        self._widget_data = deepcopy(self._data)
