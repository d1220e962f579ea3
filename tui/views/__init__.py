"""The dashboard's views, one module each; `VIEWS` is the registry the main screen builds its tabs from.

A new view is one module with a widget class, plus one line here (tab id, tab label, "module:Class", widget id)
and its tab key in tui/app.py's BINDINGS. Plot views subclass `tui.views.base.PlotView` and get the
off-thread render, crosshair, zoom, legend and colour keys for free.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass


@dataclass(frozen=True)
class ViewSpec:
    tab: str
    label: str
    target: str | None  # "module:Class", or None for the Runs view (built with the screen)
    widget_id: str
    plot: bool = False

    def load(self):
        module, _, name = self.target.partition(":")
        return getattr(importlib.import_module(module), name)


VIEWS = (
    ViewSpec("runs", "1 Runs", None, "runs-view"),
    ViewSpec("curves", "2 Curves", "tui.views.curves:CurvesView", "curves-pane", plot=True),
    ViewSpec("lr", "3 LR effects", "tui.views.lr_effects:LrEffectsView", "lr-pane", plot=True),
    ViewSpec("dead", "4 Dead ReLUs", "tui.views.dead_relu:DeadReluView", "dead-pane", plot=True),
    ViewSpec("compare", "5 Compare", "tui.views.compare:CompareView", "compare-view"),
    ViewSpec("launch", "6 Launch", "tui.views.launch:LaunchView", "launch-view"),
    ViewSpec("boundary", "7 Boundaries", "tui.views.boundary:BoundaryView", "boundary-pane", plot=True),
)
VIEW_BY_TAB = {view.tab: view for view in VIEWS}
PLOT_TABS = tuple(view.tab for view in VIEWS if view.plot)
