"""The Runs view: a filter line, the live runs table and a status line; or what the store is doing instead (being
read, not there yet, or unreadable, with its own error message).

The table holds only the runs the filter matches; updates touch only the cells of runs that changed, so thousands of
rows stay cheap to keep live. The cursor belongs to a run id, not a row number: when rows are inserted or re-sorted
live it follows its run, so `space`, `enter` and `s` act on the run the user highlighted. Everything the user asks
for (select, stop, resume, open) is posted up as a message; the app owns the selection and the actions.
"""
from __future__ import annotations

import time
from typing import Callable, Iterable

from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.message import Message
from textual.widgets import DataTable, Input, Static

from tui.views.runs.columns import (COLUMN_BY_KEY, COLUMNS, CONFIG_PREFIX, MARK, NARROW_WIDTH, SELECT_STYLE, SORTABLE,
                                    age_cell, config_columns_of, constant_columns, constant_text, fit_columns,
                                    id_order, layout_changed, run_cells, run_id_width, sort_func)
from tui.views.runs.filter import RunFilter
from tui.views.runs.states import BROKEN, EMPTY, LOADING, MISSING, READY, info_text, state_text
from tui.views.runs.table import RunsTable
from tui.widgets.live_text import LiveText


class RunsView(Vertical):
    """Filter input, runs table, status line; a state message (reading / no runs / unreadable store) instead."""

    BINDINGS = [
        Binding("a", "select_all", "Select shown", show=False),
        Binding("n", "select_none", "Select none", show=False),
        Binding("s", "stop", "Stop"),
        Binding("r", "resume", "Resume"),
        Binding("o", "sort_next", "Sort"),
        Binding("O", "sort_reverse", "Reverse sort", show=False),
        Binding("c", "compare", "Compare", show=False),
    ]
    FIRST_ROWS = 80  # rows added before the first paint; the rest follow in chunks, a frame apart
    CHUNK_ROWS = 400

    class CursorMoved(Message):
        def __init__(self, run_id: str | None) -> None:
            super().__init__()
            self.run_id = run_id

    class SelectionToggled(Message):
        """Toggle these runs in the selection (`select` True/False: set or clear them all)."""

        def __init__(self, run_ids: list[str], select: bool | None = None) -> None:
            super().__init__()
            self.run_ids, self.select = run_ids, select

    class ShownChanged(Message):
        """The runs the filter shows changed (the plots show them when nothing is selected)."""

    class RunAction(Message):
        """`action` (stop, resume, open, compare) on these runs."""

        def __init__(self, action: str, run_ids: list[str]) -> None:
            super().__init__()
            self.action, self.run_ids = action, run_ids

    def __init__(self, model, selected: set[str], clock: Callable[[], float] = time.time, **kwargs) -> None:
        super().__init__(**kwargs)
        self.model, self.selected, self.clock = model, selected, clock
        self.filter = RunFilter()
        self.sort_key = "age"
        self.sort_reverse = False
        self.narrow: bool | None = None
        self.keys: list[str] = []
        self.widths: dict[str, int] = {}
        self.config_columns: list = []
        self.run_width, self.constant = None, {}  # the longest shown id; opt/lr/net values every shown run has
        self.state = LOADING
        self._cells: dict[str, list] = {}  # run id -> cells shown (to update only what changed)
        self._visible: set[str] = set()
        self._pending: dict[str, dict[str, object]] = {}  # cell updates applied together (one re-render)
        self._fill_queue: list[str] = []  # run ids still to add after a rebuild (in display order)
        self._fill_generation = 0
        self._resort_after_fill = False
        self._age_tick = 0.0
        self._cursor_run: str | None = None  # the run the cursor is on (it follows it across inserts and sorts)
        self._paused = False  # another tab is shown: rows beyond the first screenful wait
        self._stale = False  # a rebuild was put off while paused
        self._width = 0

    def compose(self) -> ComposeResult:
        yield Input(placeholder="filter: adam  lr<0.1  activation=leaky_relu  status:running  -exp:lr_sweep-1  (/)",
                    id="runs-filter")
        yield RunsTable(id="runs-table", cursor_type="row", zebra_stripes=True, cell_padding=1)
        yield Static("", id="runs-empty")
        yield LiveText("", id="runs-info")

    @property
    def table(self) -> RunsTable:
        return self.query_one(RunsTable)

    def on_mount(self) -> None:
        self._setup_columns(self.app.size.width)
        self.show_state(LOADING, None)

    # -- columns ----------------------------------------------------------------------------------------------------
    def _setup_columns(self, width: int, force: bool = False, refill: bool = True) -> None:
        self._width = width
        keys, widths = fit_columns(width, self.config_columns, self.run_width, self.constant)
        if keys == self.keys and widths == self.widths and not force:
            return
        self.narrow = width < NARROW_WIDTH
        table = self.table
        table.clear(columns=True)
        self.keys, self.widths = keys, widths
        for key in self.keys:
            table.add_column(self._label(key), key=key, width=self.widths[key])
        self._cells.clear()
        self._visible.clear()
        if refill:
            self.rebuild(refit=False)

    def _column(self, key: str):
        if key.startswith(CONFIG_PREFIX):
            return next(c for c in self.config_columns if c.key == key)
        return COLUMN_BY_KEY[key]

    def _label(self, key: str) -> Text:
        col = self._column(key)
        label = "acc" if (self.narrow and key == "acc") else col.label
        text = Text(label, justify=col.justify)
        if key == self.sort_key:
            text.append("▼" if self.sort_reverse else "▲", style=SELECT_STYLE)
        return text

    def on_resize(self) -> None:
        self._setup_columns(self.app.size.width)

    def _refit_layout(self, runs: list[dict]) -> bool:
        """Fit the columns to the shown runs (varying grid keys, longest id, constant columns); True if changed."""
        run_ids = [run["id"] for run in runs]
        columns = config_columns_of(self.model, run_ids)
        layout = ([c.key for c in columns], run_id_width(run_ids), constant_columns(runs))
        if layout == ([c.key for c in self.config_columns], self.run_width, self.constant):
            return False
        self.config_columns, self.run_width, self.constant = columns, layout[1], layout[2]
        if self.sort_key.startswith(CONFIG_PREFIX) and self.sort_key not in [c.key for c in columns]:
            self.sort_key, self.sort_reverse = "age", False
        return True

    # -- data -------------------------------------------------------------------------------------------------------
    @property
    def paused(self) -> bool:
        return self._paused

    @paused.setter
    def paused(self, value: bool) -> None:
        self._paused = value
        if not value and self._stale:
            self._stale = False
            self.rebuild()

    def rebuild(self, refit: bool = True) -> None:
        """Re-fill the table from the model (filter, sort or columns changed). The rows on screen come first;
        the others are added in chunks after the next frames, so thousands of runs paint at once."""
        self._stale = False
        now = self.clock()
        if self.filter:
            runs = [run for run in self.model.runs.values()
                    if self.filter.matches(run, self.model.flat(run["id"]), now)]
        else:
            runs = list(self.model.runs.values())
        if refit and self._refit_layout(runs):
            self._setup_columns(self._width or self.app.size.width, force=True, refill=False)
        table = self.table
        table.clear()
        self._cells.clear()
        self._pending.clear()
        runs.sort(key=self._sort_func(now), reverse=self.sort_reverse)
        order = [run["id"] for run in runs]
        self._visible = set(order)
        self._fill_generation += 1
        self._fill_queue = order
        self._fill(self._fill_generation, self.FIRST_ROWS)
        self.update_info()
        self.post_message(self.ShownChanged())

    @property
    def filling(self) -> bool:
        """True while rows are still being added after a rebuild (not while paused behind another tab)."""
        return bool(self._fill_queue) and not self._paused

    def _fill(self, generation: int, count: int) -> None:
        if generation != self._fill_generation or not self._fill_queue:
            return
        if self.paused and count != self.FIRST_ROWS:  # another tab is shown: it gets the CPU; go on when back
            self.set_timer(0.25, lambda: self._fill(generation, count))
            return
        chunk, self._fill_queue = self._fill_queue[:count], self._fill_queue[count:]
        now = self.clock()
        table = self.table
        for run_id in chunk:
            run = self.model.runs.get(run_id)
            if run is None:
                self._visible.discard(run_id)
                continue
            cells = self._run_cells(run, now)
            self._cells[run_id] = cells
            table.add_row(*cells, key=run_id)
        self._follow_cursor()
        if self._fill_queue:
            self.call_after_refresh(self._fill, generation, self.CHUNK_ROWS)
        elif self._resort_after_fill:
            self._resort_after_fill = False
            self._resort()

    def _run_cells(self, run: dict, now: float) -> list:
        return run_cells(run, now, self.keys, run["id"] in self.selected, self.widths, self.model.flat(run["id"]))

    def _sort_func(self, now: float):
        return sort_func(self.sort_key, self.sort_reverse, self.model, now)

    def _resort(self) -> None:
        """Sort the table rows, re-rendering only rows that moved (FastDataTable.reorder); a no-op when the order
        stays the same; the cursor stays on its run."""
        now = self.clock()
        runs = self.model.runs
        func = self._sort_func(now)
        key = lambda rid: func(runs[rid]) if rid in runs else (2, 0, ("", 0))  # noqa: E731
        table = self.table
        current = table.ordered_keys()
        wanted = sorted(table.all_keys(), key=lambda row_key: key(row_key.value), reverse=self.sort_reverse)
        if wanted != current:
            table.reorder(wanted)
            self._follow_cursor()

    def _follow_cursor(self) -> None:
        """Put the cursor back on its run after rows moved (inserted above it, re-sorted, filled in chunks)."""
        run_id = self._cursor_run
        table = self.table
        if run_id is None or run_id not in self._cells:
            return
        index = table.get_row_index(run_id)
        if index != table.cursor_row:
            table.move_cursor(row=index, animate=False)

    def apply_changes(self, changed: set[str], removed: set[str]) -> None:
        """Update rows of changed runs, add new matching runs, drop removed or no-longer-matching ones."""
        model, table = self.model, self.table
        new = [rid for rid in changed if rid not in self._visible and rid in model.runs]
        if len(new) > self.FIRST_ROWS and self.paused:
            self._stale = True  # thousands of new rows while another tab is shown: rebuild when shown again
            return
        if len(new) > self.FIRST_ROWS or (new and self._new_runs_change_layout(new)):
            self.rebuild()  # many new runs (the first poll), or new runs that vary in other keys or are longer
            return
        now = self.clock()
        added = moved = False
        for run_id in removed:
            if run_id in self._cells:
                table.remove_row(run_id)
                self._cells.pop(run_id, None)
            self._visible.discard(run_id)
        for run_id in changed:
            run = model.runs.get(run_id)
            if run is None:
                continue
            match = self.filter.matches(run, model.flat(run_id), now)
            if run_id in self._visible and run_id not in self._cells:
                if not match:
                    self._visible.discard(run_id)  # still queued: _fill skips it
                    self._fill_queue = [rid for rid in self._fill_queue if rid != run_id]
                continue  # still queued: its cells are computed when it is added
            if run_id in self._visible:
                if not match:
                    table.remove_row(run_id)
                    self._visible.discard(run_id)
                    self._cells.pop(run_id, None)
                    added = True  # the shown set changed
                    continue
                moved |= self._update_row(run, now)
            elif match and self._fill_queue:  # a rebuild is still adding rows: queue it, sort at the end
                self._fill_queue.append(run_id)
                self._visible.add(run_id)
                self._resort_after_fill = True
            elif match:
                cells = self._run_cells(run, now)
                self._cells[run_id] = cells
                table.add_row(*cells, key=run_id)
                self._visible.add(run_id)
                added = True
        if now - self._age_tick >= 5.0:
            self.refresh_ages(now, flush=False)
        self._flush()
        if (added or removed or (moved and self.sort_key not in ("run", "exp", "age", "net", "opt", "lr"))) \
                and not self._fill_queue:
            self._resort()
        self._follow_cursor()
        if added or (removed & self._visible) or removed:
            self.post_message(self.ShownChanged())
        if changed or removed:
            self.update_info()

    def _new_runs_change_layout(self, new: list[str]) -> bool:
        now, model = self.clock(), self.model
        matching = [rid for rid in new if self.filter.matches(model.runs[rid], model.flat(rid), now)]
        return layout_changed(model, self._visible, matching, self.config_columns, self.run_width, self.constant)

    def _update_row(self, run: dict, now: float) -> bool:
        """Update the differing cells of one visible row; True when the sort column's cell changed."""
        run_id = run["id"]
        cells = self._run_cells(run, now)
        old = self._cells.get(run_id)
        changed = {key: cells[i] for i, key in enumerate(self.keys) if old is None or cells[i] != old[i]}
        self._cells[run_id] = cells
        if changed:
            self._pending[run_id] = changed
        return self.sort_key in changed

    def _flush(self) -> None:
        pending, self._pending = self._pending, {}
        self.table.update_rows(pending)

    def refresh_ages(self, now: float | None = None, flush: bool = True) -> None:
        """Ages tick (and runs turn stale) without any store change: refresh the cells whose text changed."""
        now = self.clock() if now is None else now
        self._age_tick = now
        runs = self.model.runs
        for run_id in self._visible:
            run, cells = runs.get(run_id), self._cells.get(run_id)
            if run is None or cells is None:
                continue
            if "age" in self.keys:
                index = self.keys.index("age")
                new = age_cell(run, now)
                if new != cells[index]:
                    cells[index] = new
                    self._pending.setdefault(run_id, {})["age"] = new
            if run.get("status") == "running":
                self._update_row(run, now)  # running -> stale is a matter of time
        if flush:
            self._flush()

    def refresh_selection(self, run_ids: Iterable[str]) -> None:
        for run_id in run_ids:
            cells = self._cells.get(run_id)
            if cells is None:
                continue
            mark = Text(MARK, style=SELECT_STYLE) if run_id in self.selected else " "
            cells[0] = mark
            self._pending.setdefault(run_id, {})["sel"] = mark
        self._flush()
        self.update_info()

    def update_info(self) -> None:
        sort = self._column(self.sort_key).label if self.sort_key in self.keys or self.sort_key in COLUMN_BY_KEY \
            else None
        self.query_one("#runs-info", LiveText).show_text(info_text(len(self._visible), len(self.model.runs),
                                                              len(self.selected), sort, self.sort_reverse,
                                                              self.filter.text, constant_text(self.constant)))

    # -- states: reading, no runs, unreadable store ------------------------------------------------------------
    def show_state(self, state: str, message: str | None) -> None:
        """What to show instead of the table: LOADING (first read in flight), MISSING (no store yet: how to start
        one), BROKEN (the store cannot be read: its own error, no command that would fail the same way), EMPTY (a
        store without runs), READY (the table)."""
        if state == READY and not self.model.runs:
            state = EMPTY
        self.state = state
        self.set_class(state != READY, "-empty")
        if state == READY:
            return
        self.query_one("#runs-empty", Static).update(state_text(state, message, str(self.app.runs_dir)))

    # -- queries ----------------------------------------------------------------------------------------------------
    def cursor_run_id(self) -> str | None:
        return self._cursor_run if self._cursor_run in self._cells else self.table.cursor_run_id()

    def visible_run_ids(self) -> list[str]:
        """The runs in the table, in display order."""
        return self.table.row_ids() if self.table.row_count else []

    def shown_run_ids(self) -> list[str]:
        """Every run the filter shows, in display order (rows still being filled in included)."""
        return self.visible_run_ids() + [rid for rid in self._fill_queue if rid in self._visible]

    def shown_total(self) -> int:
        """How many runs the filter shows (while a rebuild waits behind another tab: what it will show)."""
        if self._stale and not self.filter:
            return len(self.model.runs)
        return len(self._visible)

    def target_runs(self) -> list[str]:
        """The runs an action applies to: the selection, else the highlighted run."""
        if self.selected:
            return sorted(self.selected, key=id_order)
        cursor = self.cursor_run_id()
        return [cursor] if cursor else []

    # -- events / actions -------------------------------------------------------------------------------------------
    @on(Input.Changed, "#runs-filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.set_filter(event.value, from_input=True)

    @on(Input.Submitted, "#runs-filter")
    def _filter_submitted(self) -> None:
        self.screen.set_focus(self.table)  # at once: a key typed right after enter must reach the table

    def set_filter(self, text: str, from_input: bool = False) -> None:
        new = RunFilter(text)
        if not from_input:
            self.query_one("#runs-filter", Input).value = text  # posts Changed -> set_filter again (same text)
        if new.text == self.filter.text:
            return
        self.filter = new
        self.rebuild()
        self._scroll_to_cursor_run()
        self.call_after_refresh(self._scroll_to_cursor_run)  # again once the new rows' heights are laid out

    def _scroll_to_cursor_run(self) -> None:
        """After a filter change: the cursor's run in view, else the top (still queued runs: _follow_cursor)."""
        if self._cursor_run in self._cells or self._cursor_run not in self._visible:
            first = self.table.show_run(self._cursor_run if self._cursor_run in self._cells else None)
            if first != self._cursor_run:
                self._cursor_run = first
                self.post_message(self.CursorMoved(first))

    def set_sort(self, key: str, reverse: bool | None = None) -> None:
        if key not in SORTABLE and not key.startswith(CONFIG_PREFIX):
            return
        if reverse is None:
            reverse = (not self.sort_reverse) if key == self.sort_key else False
        self.sort_key, self.sort_reverse = key, reverse
        for col_key in self.keys:
            column = self.table.columns.get(col_key)  # type: ignore[call-overload]
            if column is not None:
                column.label = self._label(col_key)
        self.table.refresh_header()
        self._resort()
        self.update_info()
        self.post_message(self.ShownChanged())

    @on(DataTable.HeaderSelected, "#runs-table")
    def _header_clicked(self, event: DataTable.HeaderSelected) -> None:
        self.set_sort(event.column_key.value)

    @on(DataTable.RowHighlighted, "#runs-table")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.cursor_row != self.table.cursor_row:
            return  # an older highlight (the cursor moved again since, e.g. back onto its run)
        run_id = event.row_key.value if event.row_key else None
        if run_id != self._cursor_run:
            self._cursor_run = run_id
            self.post_message(self.CursorMoved(run_id))

    @on(DataTable.RowSelected, "#runs-table")
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        if event.row_key is not None:
            self.post_message(self.RunAction("open", [event.row_key.value]))

    @on(RunsTable.ToggleSelect)
    def _toggle(self, event: RunsTable.ToggleSelect) -> None:
        event.stop()
        self.post_message(self.SelectionToggled([event.run_id]))

    def action_focus_filter(self) -> None:
        self.screen.set_focus(self.query_one("#runs-filter", Input))

    def action_select_all(self) -> None:
        shown = self.shown_run_ids()
        everything = bool(shown) and all(rid in self.selected for rid in shown)
        self.post_message(self.SelectionToggled(shown, select=not everything))

    def action_select_none(self) -> None:
        self.post_message(self.SelectionToggled(sorted(self.selected), select=False))

    def action_stop(self) -> None:
        self.post_message(self.RunAction("stop", self.target_runs()))

    def action_resume(self) -> None:
        self.post_message(self.RunAction("resume", self.target_runs()))

    def action_sort_next(self) -> None:
        sortable = [k for k in self.keys if k in SORTABLE or k.startswith(CONFIG_PREFIX)]
        index = sortable.index(self.sort_key) if self.sort_key in sortable else -1
        self.set_sort(sortable[(index + 1) % len(sortable)], reverse=False)

    def action_sort_reverse(self) -> None:
        self.set_sort(self.sort_key, reverse=not self.sort_reverse)

    def action_compare(self) -> None:
        self.post_message(self.RunAction("compare", self.target_runs()))

    def key_escape(self) -> None:
        if self.query_one("#runs-filter", Input).has_focus:
            self.screen.set_focus(self.table)


__all__ = ["RunsView", "RunsTable", "RunFilter", "COLUMNS", "LOADING", "EMPTY", "MISSING", "BROKEN", "READY"]
