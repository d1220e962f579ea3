"""The main screen: top bar, the views as tabs (Runs, Curves, LR effects, Dead ReLUs, Compare, Launch), footer."""
from __future__ import annotations

import asyncio

from textual import on
from textual.app import ComposeResult
from textual.css.query import NoMatches
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Static, TabbedContent, TabPane

from tui.model import Changes
from tui.widgets.compare import CompareView
from tui.widgets.footer import CachedFooter
from tui.widgets.header import TopBar
from tui.widgets.launch import LaunchView
from tui.widgets.runs_table import RunsView

# (tab id, label, pane class name in tui.panes or None)
VIEWS = (
    ("runs", "1 Runs", None),
    ("curves", "2 Curves", "CurvesPane"),
    ("lr", "3 LR effects", "LRPane"),
    ("dead", "4 Dead ReLUs", "DeadReluPane"),
    ("compare", "5 Compare", None),
    ("launch", "6 Launch", None),
)
PLOT_TABS = {tab: cls for tab, _label, cls in VIEWS if cls}


def make_pane(class_name: str, pane_id: str) -> Widget:
    """A plot pane from tui.panes (the plot engine); if that module cannot be imported, say why in its place."""
    try:
        from tui import panes
    except Exception as e:  # the dashboard stays usable without plots
        return Static(f"plots unavailable: {type(e).__name__}: {e}", id=pane_id, classes="pane-error")
    return getattr(panes, class_name)(id=pane_id)


class MainScreen(Screen):
    """Owns the views; the app calls `model_changed` after every poll and `selection_changed` on (de)selection."""

    def __init__(self) -> None:
        super().__init__()
        self._mounted_views: dict[str, object] = {}  # tab -> AwaitMount of its deferred view
        self._views: dict[str, Widget] = {}  # tab -> its deferred view widget
        self._tabbed: TabbedContent | None = None
        self._runs_view: RunsView | None = None

    def compose(self) -> ComposeResult:
        app = self.app
        yield TopBar(str(app.runs_dir), id="topbar")
        with TabbedContent(id="views", initial="runs"):
            for tab, label, _cls in VIEWS:
                with TabPane(label, id=tab):
                    if tab == "runs":
                        yield RunsView(clock=app.clock, id="runs-view")
        yield CachedFooter()

    def on_mount(self) -> None:
        self.query_one("#runs-table").focus()
        self.call_after_refresh(self.app.start_polling)

    # -- deferred views: only the Runs view is built before the first paint ---------------------------------------
    def _make_view(self, tab: str) -> Widget:
        cls = PLOT_TABS.get(tab)
        if cls:
            return make_pane(cls, f"{tab}-pane")
        if tab == "compare":
            return CompareView(id="compare-view")
        return LaunchView(self.app.runs_dir, id="launch-view")

    def ensure_view(self, tab: str):
        """Mount a view the first time it is needed; returns an awaitable that completes when it is mounted."""
        if tab == "runs":
            return _done()
        if tab not in self._mounted_views:
            view = self._views[tab] = self._make_view(tab)
            self._mounted_views[tab] = self.query_one(f"TabPane#{tab}", TabPane).mount(view)
        return self._mounted_views[tab]

    def mount_deferred_views(self) -> None:
        """Build the other views once the runs are on screen, so a tab switch later is instant."""
        for tab, _label, _cls in VIEWS:
            self.ensure_view(tab)

    def view_ready(self, tab: str) -> bool:
        """The tab's view is mounted. (Called several times per key press and poll: no DOM query here.)"""
        if tab == "runs":
            return True
        view = self._views.get(tab)
        return view is not None and view.is_mounted

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
        if self.active_tab != tab:
            return
        if tab == "runs":
            self.query_one("#runs-table").focus()
        elif tab in PLOT_TABS:
            pane = self._views[tab]
            if pane.focusable:
                pane.focus()
        elif tab == "compare":
            self._views["compare"].focus()
        elif tab == "launch":
            self.query_one("#launch-files").focus()

    @on(TabbedContent.TabActivated, "#views")
    def _tab_activated(self, event: TabbedContent.TabActivated) -> None:
        tab = event.pane.id or ""
        if not self.view_ready(tab):
            self.ensure_view(tab)
            self.call_after_refresh(self._tab_activated, event)
            return
        # The view shows what it showed last time at once; bringing it up to date (Compare rebuilds its table on
        # the UI thread, a plot starts a render thread that competes for the GIL) waits until the switched screen
        # is painted, so the switch itself stays quick.
        self.call_after_refresh(self._refresh_if_active, tab)
        focused = self.focused
        if focused is None or event.pane not in focused.ancestors:
            self._focus_tab(tab)

    def _refresh_if_active(self, tab: str) -> None:
        if self.active_tab == tab:
            self.refresh_view(tab, None)

    def model_changed(self, changes: Changes) -> None:
        runs_view = self.runs_view
        runs_view.apply_changes(changes.runs, changes.removed)
        if changes.runs or changes.removed:
            runs_view.show_empty(self.app.store_message)
        tab = self.active_tab
        if tab != "runs":
            self.refresh_view(tab, changes)
        self.app.refresh_topbar(self.query_one(TopBar))

    def selection_changed(self, changed_ids) -> None:
        self.runs_view.refresh_selection(changed_ids)
        tab = self.active_tab
        if tab != "runs":
            self.refresh_view(tab, None)

    def refresh_view(self, tab: str, changes: Changes | None) -> None:
        """Bring the visible view up to date. `changes` None: everything it shows may have changed."""
        if not self.view_ready(tab):
            return
        try:
            self._refresh_view(tab, changes)
        except NoMatches:  # a view still composing; its tab activation refreshes it
            pass

    def _refresh_view(self, tab: str, changes: Changes | None) -> None:
        app = self.app
        if tab in PLOT_TABS:
            pane = self._views[tab]
            if hasattr(pane, "update_view"):
                selected, _source = app.plot_selection()
                changed = set(selected) if changes is None else changes.series | changes.runs | changes.removed
                pane.update_view(app.model, selected, changed)
        elif tab == "compare":
            selected, source = app.plot_selection()
            if changes is None or (changes.all & set(selected)) or changes.removed:
                self._views["compare"].show(app.model, selected, source, app.clock())
        elif tab == "runs":
            self.runs_view.refresh_ages()


class _Done:
    """An awaitable that is already complete (the Runs view is always mounted)."""

    def __await__(self):
        return iter(())


_done = _Done
