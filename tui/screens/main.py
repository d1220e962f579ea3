"""The main screen: top bar, the views as tabs (tui.views.VIEWS), footer.

Only the Runs view is built before the first paint; the others are mounted once the runs are on screen, so a tab
switch later is instant. The app calls `model_changed` after every poll and `plan_changed` whenever what the plots
show changed (selection, filter, colour key, legend); the visible view is brought up to date, the hidden ones when
they are shown.
"""
from __future__ import annotations

import asyncio

from textual import on
from textual.app import ComposeResult
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Static, TabbedContent, TabPane

from tui.model import Changes
from tui.views import PLOT_TABS, VIEW_BY_TAB, VIEWS
from tui.views.runs import RunsView
from tui.widgets.footer import KeysFooter
from tui.widgets.header import TopBar


SETTLE_BEFORE_RENDER_S = 0.15


def make_view(tab: str, app) -> Widget:
    """The view of a tab; if its module cannot be imported, say why in its place (the rest stays usable)."""
    spec = VIEW_BY_TAB[tab]
    try:
        cls = spec.load()
    except Exception as e:
        return Static(f"{spec.label} unavailable: {type(e).__name__}: {e}", id=spec.widget_id, classes="pane-error")
    if tab == "launch":
        return cls(app.runs_dir, id=spec.widget_id)
    return cls(id=spec.widget_id)


class MainScreen(Screen):
    def __init__(self) -> None:
        super().__init__()
        self._mounting: dict[str, object] = {}  # tab -> AwaitMount of its deferred view
        self._views: dict[str, Widget] = {}
        self._tabbed: TabbedContent | None = None
        self._runs_view: RunsView | None = None
        self.refresh_due: set[str] = set()  # tabs whose catch-up refresh is scheduled (the app is busy until then)

    def compose(self) -> ComposeResult:
        app = self.app
        yield TopBar(str(app.runs_dir), id="topbar")
        with TabbedContent(id="views", initial="runs"):
            for spec in VIEWS:
                with TabPane(spec.label, id=spec.tab):
                    if spec.tab == "runs":
                        yield RunsView(app.model, app.selected, clock=app.clock, id=spec.widget_id)
        yield KeysFooter()

    def on_mount(self) -> None:
        self.query_one("#runs-table").focus()
        self.call_after_refresh(self.app.start_polling)

    # -- deferred views ---------------------------------------------------------------------------------------------
    def ensure_view(self, tab: str):
        """Mount a view the first time it is needed; returns an awaitable that completes when it is mounted."""
        if tab == "runs":
            return _Done()
        if tab not in self._mounting:
            view = self._views[tab] = make_view(tab, self.app)
            self._mounting[tab] = self.query_one(f"TabPane#{tab}", TabPane).mount(view)
        return self._mounting[tab]

    def mount_deferred_views(self) -> None:
        for spec in VIEWS:
            self.ensure_view(spec.tab)

    def view_ready(self, tab: str) -> bool:
        """The tab's view is mounted. (Called several times per key press and poll: no DOM query here.)"""
        if tab == "runs":
            return True
        view = self._views.get(tab)
        return view is not None and view.is_mounted

    def view(self, tab: str) -> Widget | None:
        return self._views.get(tab) if tab != "runs" else self.runs_view

    @property
    def tabbed(self) -> TabbedContent:
        if self._tabbed is None:
            self._tabbed = self.query_one("#views", TabbedContent)
        return self._tabbed

    @property
    def runs_view(self) -> RunsView:
        if self._runs_view is None:
            self._runs_view = self.query_one(RunsView)
        return self._runs_view

    @property
    def active_tab(self) -> str:
        return self.tabbed.active

    def show_tab(self, tab: str) -> None:
        """Switch to a view and focus it in the same step (otherwise Textual moves the focus of the hidden table to
        some other widget, and a focused widget in another pane switches the tabs back)."""
        if self.view_ready(tab):
            self.tabbed.active = tab
            self._focus_tab(tab)
        else:
            self.run_worker(self._show_when_ready(tab), group="show-tab", exclusive=True)

    async def _show_when_ready(self, tab: str) -> None:
        await self.ensure_view(tab)
        for _ in range(100):
            if self.view_ready(tab):
                break
            await asyncio.sleep(0.01)
        self.tabbed.active = tab
        self._focus_tab(tab)

    def _focus_tab(self, tab: str, attempts: int = 50) -> None:
        if not self.view_ready(tab):
            if attempts:
                self.call_after_refresh(self._focus_tab, tab, attempts - 1)
            return
        try:
            self._focus_view(tab)
        except NoMatches:  # mounted, children not yet: next frame
            if attempts:
                self.call_after_refresh(self._focus_tab, tab, attempts - 1)

    def _focus_view(self, tab: str) -> None:
        """Focus now (Widget.focus() waits for the next idle moment: a key typed right after the tab key, as in
        `1` then `a`, would still go to the previous view)."""
        if self.active_tab != tab:
            return
        if tab == "runs":
            target = self.query_one("#runs-table")
        elif tab == "launch":
            target = self.query_one("#launch-files")
        elif tab == "compare":
            target = self.query_one("#compare-table")
        else:
            target = self._views[tab]
            if not target.focusable:
                return
        self.set_focus(target)

    @on(TabbedContent.TabActivated, "#views")
    def _tab_activated(self, event: TabbedContent.TabActivated) -> None:
        tab = event.pane.id or ""
        self.runs_view.paused = tab != "runs"
        if not self.view_ready(tab):
            self.ensure_view(tab)
            self.call_after_refresh(self._tab_activated, event)
            return
        # The view shows what it showed last time at once; bringing it up to date (a plot starts a render thread
        # that competes for the GIL) waits until the switched screen is painted, so the switch itself stays quick.
        # Plots wait a little longer: while runs train, the Curves always have new points, and a render started
        # right after the first frame made switching to Curves ~110 ms instead of ~60 (measured, 2 runs training).
        if tab in PLOT_TABS:
            self.refresh_due.add(tab)
            self.set_timer(SETTLE_BEFORE_RENDER_S, lambda: self._refresh_if_active(tab))
        else:
            self.call_after_refresh(self._refresh_if_active, tab)
        self.app.view_switched(tab)
        focused = self.focused
        if focused is None or event.pane not in focused.ancestors:
            self._focus_tab(tab)

    def _refresh_if_active(self, tab: str) -> None:
        self.refresh_due.discard(tab)
        if self.active_tab == tab:
            self.refresh_view(tab, None)

    # -- updates --------------------------------------------------------------------------------------------------
    def model_changed(self, changes: Changes) -> None:
        self.runs_view.apply_changes(changes.runs, changes.removed)
        tab = self.active_tab
        if tab != "runs":
            self.refresh_view(tab, changes)
        self.app.refresh_topbar(self.query_one(TopBar))

    def plan_changed(self) -> None:
        tab = self.active_tab
        if tab != "runs":
            self.refresh_view(tab, None)

    def refresh_view(self, tab: str, changes: Changes | None) -> None:
        """Bring a view up to date. `changes` None: everything it shows may have changed."""
        if not self.view_ready(tab):
            return
        try:
            self._refresh_view(tab, changes)
        except NoMatches:  # a view still composing; its tab activation refreshes it
            pass

    def _refresh_view(self, tab: str, changes: Changes | None) -> None:
        app = self.app
        if tab in PLOT_TABS:
            view = self._views[tab]
            if hasattr(view, "update_view"):
                changed = set(app.plan_run_ids()) if changes is None else changes.all
                view.update_view(app.model, app.plan, changed)
        elif tab == "compare":
            ids, source = app.compare_selection()
            if changes is None or (changes.all & set(ids)) or changes.removed:
                self._views["compare"].show(app.model, ids, source, app.clock())
        elif tab == "runs":
            self.runs_view.refresh_ages()


class _Done:
    """An awaitable that is already complete (the Runs view is always mounted)."""

    def __await__(self):
        return iter(())
