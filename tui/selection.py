"""What the plots and Compare show, decided in one place (no Textual here):

- the selected runs, if any; else the runs the Runs filter shows, in table order, capped (and the title says so);
- grouped into units (seed groups when bands are on), named by what differs, coloured by the colour key;
- with the legend state: hidden units, and the unit the legend cursor is on.

All of it is app state, the same in every tab: a colour means one config value everywhere.
"""
from __future__ import annotations

from typing import Optional, Sequence

from tui.grouping import OPTIMIZER_COLORS, ColorMap, PlotPlan, color_key_choices, effective_color_key, plan_units, varying_keys

PLOT_CAP = 64  # runs the plots draw at most (a filter showing 10,000 runs plots the first 64, and says so)
COMPARE_CAP = 500


class PlotState:
    def __init__(self) -> None:
        self.selected: set[str] = set()  # mutated in place: the Runs view holds the same set
        self.color_key: Optional[str] = None  # None: the first preferred key that varies
        self.aggregate = True  # seed groups drawn as mean + band
        self.hidden: set[str] = set()  # unit ids (a unit's first run id)
        self.focus: Optional[str] = None
        self.colors = ColorMap({"optimizer.name": OPTIMIZER_COLORS})
        self.plan = PlotPlan()

    # -- which runs -----------------------------------------------------------------------------------------------
    def runs(self, model, shown: Sequence[str], filter_text: str, cap: int, total: Optional[int] = None,
             ) -> tuple[list[str], str]:
        """(run ids, what they are) for the plots (cap PLOT_CAP) or Compare (COMPARE_CAP). `total`: how many runs
        the filter shows when `shown` is only the first of them."""
        if self.selected:
            ids = [rid for rid in shown if rid in self.selected]
            ids += sorted(rid for rid in self.selected if rid in model.runs and rid not in set(ids))
            title = f"{len(ids)} selected"
        else:
            ids = list(shown)
            what = "the filter shows" if filter_text else "in the store"
            n = len(ids) if total is None else max(total, len(ids))
            title = f"{n} runs {what}" if n != 1 else f"1 run {what}"
        count = len(ids) if self.selected or total is None else max(total, len(ids))
        if count > cap:
            title = f"first {cap} of {count} runs {'selected' if self.selected else what}" \
                    f" (narrow the filter or select)"
            ids = ids[:cap]
        return ids, title

    def make_plan(self, model, shown: Sequence[str], filter_text: str, total: Optional[int] = None) -> PlotPlan:
        ids, title = self.runs(model, shown, filter_text, PLOT_CAP, total)
        flats = {rid: model.flat(rid) for rid in ids}
        plan = plan_units(ids, model.runs, flats, self.color_key, self.aggregate, self.colors, self.hidden,
                          self.focus)
        plan.title = title
        names = {flat.get("optimizer.name") for flat in flats.values()} - {None}
        plan.optimizer_colors = dict(self.colors.assign("optimizer.name", names)) if names else {}
        if self.focus is not None and not any(unit.id == self.focus for unit in plan.units):
            self.focus = None
        self.plan = plan
        return plan

    # -- legend and colour keys -------------------------------------------------------------------------------
    def move_focus(self, delta: int) -> None:
        """The legend cursor: next/previous unit; 0 clears it."""
        units = [unit.id for unit in self.plan.units]
        if delta == 0 or not units:
            self.focus = None
            return
        if self.focus not in units:
            self.focus = units[0] if delta > 0 else units[-1]
            return
        self.focus = units[(units.index(self.focus) + delta) % len(units)]

    def toggle_hidden(self) -> Optional[str]:
        """Hide or show the unit under the legend cursor; returns its id (None without a cursor)."""
        if self.focus is None:
            return None
        self.hidden ^= {self.focus}
        return self.focus

    def show_all(self) -> None:
        self.hidden.clear()

    def cycle_color_key(self, model) -> str:
        """The next colour key among those that vary for the plotted runs."""
        flats = [model.flat(rid) for unit in self.plan.units for rid in unit.run_ids]
        varying = varying_keys(flats)
        choices = color_key_choices(varying)
        current = effective_color_key(self.color_key, varying)
        self.color_key = choices[(choices.index(current) + 1) % len(choices)]
        return self.color_key
