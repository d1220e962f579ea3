"""The Runs view: a filter line, the live runs table (marker column, sortable, multi-select) and a status line.

The table holds only the runs that match the filter; updates touch only the cells of runs that changed, so 1,000
rows stay cheap to keep live. Selection lives in the app (`app.selected`) because the plots and Compare use it.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Callable, Iterable

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual._two_way_dict import TwoWayDict
from textual.geometry import Size
from textual.message import Message
from textual.widget import Widget
from textual.widgets import DataTable, Input, Static
from textual.widgets.data_table import ColumnKey, RowKey

from experiments.report import MISSING, format_duration, status_style
from experiments.store import STATUSES

NARROW_WIDTH = 100  # below this terminal width some columns get narrower
# Columns kept when the terminal is too narrow for all, most important first (the table shows them in COLUMNS order)
PRIORITY = ("sel", "run", "status", "epoch", "loss", "acc", "opt", "lr", "age", "net", "sps", "exp")
BAR = " ▏▎▍▌▋▊▉█"
MARK = "●"
SELECT_STYLE = "bold yellow"


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    width: int
    sort: Callable[[dict, float], object]  # (run, now) -> sort key (None sorts last)
    justify: str = "left"
    sortable: bool = True


def _natural_id(run: dict, now: float):
    return (run.get("experiment_id") or "", run.get("idx") or 0)


def _progress(run: dict) -> float | None:
    total, step = run.get("total_steps"), run.get("step")
    if total and step is not None:
        return min(1.0, step / total)
    epochs, epoch = run.get("epochs"), run.get("epoch")
    if epochs and epoch is not None:
        return min(1.0, epoch / epochs)
    return None


STATUS_ORDER = {s: i for i, s in enumerate(("running", "queued", "failed", "diverged", "lost", "stopped",
                                            "completed"))}
COLUMNS = (
    Column("sel", " ", 1, lambda r, now: 0, sortable=False),
    Column("exp", "experiment", 16, lambda r, now: (r.get("experiment_id") or "", r.get("idx") or 0)),
    Column("run", "run", 18, _natural_id),
    Column("net", "net", 6, lambda r, now: r.get("net")),
    Column("opt", "opt", 8, lambda r, now: r.get("optimizer")),
    Column("lr", "lr", 7, lambda r, now: r.get("lr"), justify="right"),
    Column("status", "status", 9, lambda r, now: STATUS_ORDER.get(r.get("status"), 99)),
    Column("epoch", "epoch", 11, lambda r, now: _progress(r)),
    Column("loss", "loss", 7, lambda r, now: _finite(r.get("train_loss")), justify="right"),
    Column("acc", "best acc", 8, lambda r, now: _finite(r.get("best_val_acc")), justify="right"),
    Column("sps", "samp/s", 7, lambda r, now: _finite(r.get("samples_per_s")), justify="right"),
    Column("age", "age", 7, lambda r, now: -(r.get("created") or 0.0), justify="right"),
)
COLUMN_BY_KEY = {c.key: c for c in COLUMNS}
SORTABLE = [c.key for c in COLUMNS if c.sortable]


def _finite(value):
    return value if isinstance(value, (int, float)) and math.isfinite(value) else None


def _num(value, fmt: str) -> str:
    if value is None:
        return MISSING
    if isinstance(value, float) and not math.isfinite(value):
        return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")
    return format(value, fmt)


def format_age(seconds: float | None) -> str:
    """Short ages for a table cell: 42s, 7m, 3h, 5d."""
    if seconds is None or not math.isfinite(seconds):
        return MISSING
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def progress_cell(run: dict, width: int) -> Text:
    """`3/10 ▇▇▇▍  ` : whole epochs done of the total, and a bar of the exact progress (steps when known)."""
    epochs = run.get("epochs")
    epoch = run.get("epoch") or 0
    label = f"{min(int(epoch), epochs)}/{epochs}" if epochs else f"{int(epoch)}"
    bar_width = width - len(label) - 1
    frac = _progress(run)
    text = Text(label)
    if bar_width >= 3 and frac is not None:
        eighths = int(round(frac * bar_width * 8))
        full, part = divmod(eighths, 8)
        bar = "█" * full + (BAR[part] if part and full < bar_width else "")
        style = "green" if run.get("status") == "completed" else status_style(run.get("status")) or "cyan"
        text.append(" ")
        text.append(bar.ljust(bar_width), style=style)
    return text


def run_cells(run: dict, now: float, keys: Iterable[str], selected: bool, widths: dict[str, int]) -> list:
    """The table cells of one run, in `keys` order. The run column is the plain id (sorting relies on it)."""
    cells = []
    for key in keys:
        if key == "sel":
            cells.append(Text(MARK, style=SELECT_STYLE) if selected else " ")
        elif key == "exp":
            cells.append(run.get("experiment_id") or MISSING)
        elif key == "run":
            cells.append(run["id"])
        elif key == "net":
            cells.append(run.get("net") or MISSING)
        elif key == "opt":
            cells.append(run.get("optimizer") or MISSING)
        elif key == "lr":
            cells.append(Text(_num(run.get("lr"), ".3g"), justify="right"))
        elif key == "status":
            status = run.get("status") or MISSING
            cells.append(Text(status, style=status_style(status)))
        elif key == "epoch":
            cells.append(progress_cell(run, widths["epoch"]))
        elif key == "loss":
            loss = run.get("train_loss")
            style = "dark_orange" if isinstance(loss, float) and not math.isfinite(loss) else ""
            cells.append(Text(_num(loss, ".4f" if loss is not None and abs(loss) < 100 else ".3g"),
                              style=style, justify="right"))
        elif key == "acc":
            acc = run.get("best_val_acc")
            cells.append(Text(_num(None if acc is None else 100 * acc, ".1f") + ("%" if acc is not None else ""),
                              justify="right"))
        elif key == "sps":
            cells.append(Text(_num(run.get("samples_per_s"), ",.0f"), justify="right"))
        elif key == "age":
            created = run.get("created")
            cells.append(Text(format_age(now - created if created else None), style="dim", justify="right"))
    return cells


# -- filter ---------------------------------------------------------------------------------------------------------
FIELD_ALIASES = {"status": "status", "s": "status", "exp": "experiment_id", "e": "experiment_id",
                 "experiment": "experiment_id", "net": "net", "n": "net", "opt": "optimizer", "o": "optimizer",
                 "optimizer": "optimizer", "data": "dataset", "dataset": "dataset", "d": "dataset"}
SEARCH_FIELDS = ("id", "experiment_id", "net", "optimizer", "dataset", "status", "device")


class RunFilter:
    """`adam status:running,queued exp:optimizers-2 -status:completed`: words match anywhere (id, net, optimizer,
    dataset, status, device), `field:a,b` matches a field by prefix (any of the values), `-` negates."""

    def __init__(self, text: str = ""):
        self.text = text.strip()
        self.terms: list[tuple[bool, str | None, tuple[str, ...]]] = []
        for token in self.text.split():
            negate = token.startswith("-") and len(token) > 1
            token = token[1:] if negate else token
            field, sep, values = token.partition(":")
            if sep and field.lower() in FIELD_ALIASES:
                wanted = tuple(v.lower() for v in values.split(",") if v)
                if wanted:
                    self.terms.append((negate, FIELD_ALIASES[field.lower()], wanted))
            else:
                self.terms.append((negate, None, (token.lower(),)))

    def __bool__(self) -> bool:
        return bool(self.terms)

    def matches(self, run: dict) -> bool:
        for negate, field, values in self.terms:
            if field is None:
                hay = " ".join(str(run.get(f) or "") for f in SEARCH_FIELDS).lower()
                hit = values[0] in hay
            else:
                value = str(run.get(field) or "").lower()
                if field == "experiment_id":
                    hit = any(value == v or value.startswith(v) for v in values)
                else:
                    hit = any(value.startswith(v) for v in values)
            if hit == negate:
                return False
        return True


# -- widgets --------------------------------------------------------------------------------------------------------
class RunsTable(DataTable):
    """The runs DataTable (row keys are run ids)."""

    BINDINGS = [
        Binding("space", "toggle_select", "Select", key_display="space"),
    ]

    class ToggleSelect(Message):
        def __init__(self, run_id: str) -> None:
            super().__init__()
            self.run_id = run_id

    # Every column has a fixed width and every row is one line high, so DataTable's measuring of cell contents
    # (all cells of new rows; a whole column whenever an updated cell gets narrower) is wasted work: it cost
    # ~0.3 s per 1,000 rows added and made live updates of a sorted column O(rows). Only the virtual size is needed.
    def _update_dimensions(self, new_rows) -> None:
        header_height = self.header_height if self.show_header else 0
        width = sum(column.get_render_width(self) for column in self.columns.values())
        self.virtual_size = Size(width + self._row_label_column_width, self._total_row_height + header_height)

    def _update_column_widths(self, updated_cells) -> None:
        pass

    # DataTable throws away every render cache (cells, rows, lines) whenever it gets a Resize event and whenever CSS
    # is applied to it. A hidden tab's widgets get a Resize when they are shown again (even at the same size), and
    # CSS is re-applied on every focus change, so switching back to the Runs view re-rendered all ~400 visible cells
    # (30-40 ms of a ~90 ms switch on 2 busy cores). The caches are keyed by the pseudo-class (focus/hover) state
    # and the base style already; what they miss is a change of size or of the styles under a given state (theme,
    # CSS), so only those invalidate them here.
    _cached_size: Size | None = None
    _style_check = True  # CSS was applied since the last render: compare the styles
    _render_state = None  # pseudo-class state of the last render
    _style_theme = None

    def _on_resize(self, event) -> None:
        event.prevent_default()  # not DataTable._on_resize, which invalidates the caches on every Resize
        if self.size != self._cached_size:
            self._cached_size = self.size
            self._update_count += 1

    def notify_style_update(self) -> None:
        self._style_check = True
        Widget.notify_style_update(self)
        self.refresh()

    def render_lines(self, crop):
        state = self.get_pseudo_class_state()
        if self._style_check or state != self._render_state:
            self._style_check = False
            self._render_state = state
            self._get_styles_to_render_cell.cache_clear()  # its cache is not keyed by the focus state
            theme = getattr(self.app, "theme", None)
            signature = (self.rich_style, tuple(self.get_component_rich_style(name, partial=True)
                                                for name in sorted(self.COMPONENT_CLASSES)))
            signatures = self.__dict__.setdefault("_style_signatures", {})
            known = signatures.get(state)
            if theme != self._style_theme or (known is not None and known != signature):
                signatures.clear()  # the styles changed: nothing rendered before is valid
                self._style_theme = theme
                for cache in (self._row_render_cache, self._cell_render_cache, self._row_renderable_cache,
                              self._line_cache, self._styles_cache):
                    cache.clear()
            signatures[state] = signature
        return super().render_lines(crop)

    def _render_cell(self, row_index: int, column_index: int, base_style: Style, width: int,
                     cursor: bool = False, hover: bool = False):
        """DataTable's cell rendering with a fast path for body cells (one line, fixed width): the Text is cut or
        padded to the column width directly instead of going through Rich's Padding/Styled/render_lines pipeline,
        which made a full-table redraw (tab switch, focus change) cost ~150 ms at 120x36 on 2 cores."""
        if row_index < 0 or column_index < 0:
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        row_key = self._row_locations.get_key(row_index)
        column_key = self._column_locations.get_key(column_index)
        cache_key = (row_key, column_key, base_style, cursor, hover, self._show_hover_cursor, self._update_count,
                     self._pseudo_class_state)
        lines = self._cell_render_cache.get(cache_key)
        if lines is not None:
            return lines
        row = self.rows[row_key]
        if row.height != 1:
            return super()._render_cell(row_index, column_index, base_style, width, cursor, hover)
        base_style += Style.from_meta({"row": row_index, "column": column_index})
        cell = self._get_row_renderables(row_index)[1][column_index]
        component_style, post_style = self._get_styles_to_render_cell(
            False, False, row_index < self.fixed_rows or column_index < self.fixed_columns, hover, cursor,
            self.show_cursor, self._show_hover_cursor, self.cursor_foreground_priority == "css",
            self.cursor_background_priority == "css")
        text = cell.copy() if isinstance(cell, Text) else Text(str(cell))
        text.no_wrap = True
        pad = self.cell_padding
        inner = max(0, width - 2 * pad)
        length = text.cell_len
        if length > inner:
            text.truncate(inner, overflow="ellipsis")
        elif length < inner:
            if text.justify == "right":
                text.pad_left(inner - length)
            else:
                text.pad_right(inner - length)
        if pad:
            text.pad_left(pad)
            text.pad_right(pad)
        segments = list(Segment.apply_style(text.render(self.app.console), base_style + component_style,
                                            post_style))
        lines = [segments]
        self._cell_render_cache[cache_key] = lines
        return lines

    def update_rows(self, updates: dict[str, dict[str, object]]) -> None:
        """Set cells of a few rows and re-render only those rows.

        DataTable.update_cell bumps a counter that is part of every render cache key, so one changed cell makes the
        next frame re-render every visible cell (~100 ms for 30 rows x 12 columns on a 2-core machine): once per
        poll while runs train, the UI would spend much of its time there. Here the data changes in place and only
        the cache entries of the changed rows are dropped."""
        if not updates:
            return
        keys = set()
        for run_id, cells in updates.items():
            row_key = RowKey(run_id)
            if row_key not in self._row_locations:
                continue
            data = self._data[row_key]
            for column_key, value in cells.items():
                data[ColumnKey(column_key)] = value
            keys.add(row_key)
        for cache in (self._cell_render_cache, self._row_render_cache):
            for key in [k for k in cache.keys() if k[0] in keys]:
                cache.discard(key)
        for row_key in keys:
            self._row_renderable_cache.discard((self._update_count, self._row_locations.get(row_key)))
        # only the lines of those rows (rows are one line high; line y counts the header), so the other rows' lines
        # stay cached, e.g. for when the Runs tab is shown again after polls updated a few rows
        header = self.header_height if self.show_header else 0
        lines = {header + self._row_locations.get(row_key) for row_key in keys}
        for key in [k for k in self._line_cache.keys() if k[0] in lines]:
            self._line_cache.discard(key)
        for row_key in keys:
            self.refresh_row(self._row_locations.get(row_key))

    def reorder(self, ordered: list[RowKey]) -> None:
        """Put the rows in this order (all row keys). DataTable.sort bumps the counter that is part of every render
        cache key, so after any re-sort the next frame re-renders every visible cell (a poll reordering two
        training runs, or the Runs tab shown again after that happened while it was hidden). Here only the rows
        that moved are re-rendered: their cells carry their row index (mouse metadata)."""
        old = self._row_locations
        moved = {key for index, key in enumerate(ordered) if old.get(key) != index}
        if not moved:
            return
        self._row_locations = TwoWayDict({key: index for index, key in enumerate(ordered)})
        indices = {index for index, key in enumerate(ordered) if key in moved}  # positions with another row now
        for cache in (self._cell_render_cache, self._row_render_cache):
            for key in [k for k in cache.keys() if k[0] in moved]:
                cache.discard(key)
        for key in [k for k in self._row_renderable_cache.keys() if k[1] in indices]:
            self._row_renderable_cache.discard(key)
        header = self.header_height if self.show_header else 0
        lines = {header + index for index in indices}
        for key in [k for k in self._line_cache.keys() if k[0] in lines]:
            self._line_cache.discard(key)
        self._offset_cache.clear()  # row order by line (keyed by the update counter)
        self._ordered_row_cache.clear()
        self.refresh()

    def refresh_header(self) -> None:
        """Re-render the header row only (column labels changed)."""
        header_key = self._header_row_key
        for cache in (self._cell_render_cache, self._row_render_cache):
            for key in [k for k in cache.keys() if k[0] == header_key]:
                cache.discard(key)
        for key in [k for k in self._row_renderable_cache.keys() if k[1] == -1]:  # (update count, row index)
            self._row_renderable_cache.discard(key)
        height = self.header_height if self.show_header else 0
        for key in [k for k in self._line_cache.keys() if k[0] < height]:
            self._line_cache.discard(key)
        self.refresh()

    def action_toggle_select(self) -> None:
        run_id = self.cursor_run_id()
        if run_id is not None:
            self.post_message(self.ToggleSelect(run_id))
            if self.cursor_row < self.row_count - 1:
                self.move_cursor(row=self.cursor_row + 1)

    def cursor_run_id(self) -> str | None:
        if not self.row_count or self.cursor_row < 0:
            return None
        try:
            return self.coordinate_to_cell_key((self.cursor_row, 0)).row_key.value
        except Exception:
            return None


class RunsView(Vertical):
    """Filter input, runs table, status line; an empty-state message when there are no runs."""

    BINDINGS = [
        Binding("slash", "focus_filter", "Filter", key_display="/"),
        Binding("a", "select_all", "Select all", show=False),
        Binding("x", "clear_selection", "Clear sel.", show=False),
        Binding("s", "stop", "Stop"),
        Binding("r", "resume", "Resume"),
        Binding("o", "sort_next", "Sort"),
        Binding("O", "sort_reverse", "Reverse sort", show=False),
        Binding("c", "compare", "Compare", show=False),
    ]

    class CursorMoved(Message):
        """The highlighted run changed (the plots follow its experiment when nothing is selected)."""

        def __init__(self, run_id: str | None) -> None:
            super().__init__()
            self.run_id = run_id

    def __init__(self, clock: Callable[[], float] = time.time, **kwargs) -> None:
        super().__init__(**kwargs)
        self.clock = clock
        self.filter = RunFilter()
        self.sort_key = "age"
        self.sort_reverse = False
        self.narrow: bool | None = None
        self.keys: list[str] = []
        self.widths: dict[str, int] = {c.key: c.width for c in COLUMNS}
        self._cells: dict[str, list] = {}  # run id -> cells shown (to update only what changed)
        self._visible: set[str] = set()
        self._pending: dict[str, dict[str, object]] = {}  # cell updates applied together (one re-render)
        self._fill_queue: list[str] = []  # run ids still to add after a rebuild (in display order)
        self._fill_generation = 0
        self._resort_after_fill = False
        self._age_tick = 0.0

    def compose(self) -> ComposeResult:
        yield Input(placeholder="filter: words, status:running,failed exp:NAME opt:adam -status:completed   (/)",
                    id="runs-filter")
        yield RunsTable(id="runs-table", cursor_type="row", zebra_stripes=True, cell_padding=1)
        yield Static("", id="runs-empty")
        yield Static("", id="runs-info")

    @property
    def table(self) -> RunsTable:
        return self.query_one(RunsTable)

    def on_mount(self) -> None:
        self._setup_columns(self.app.size.width)
        self.show_empty(None)

    # -- columns / layout ---------------------------------------------------------------------------------------------
    @staticmethod
    def fit_columns(width: int) -> tuple[list[str], dict[str, int]]:
        """The columns that fit `width` terminal cells (by PRIORITY), in display order, and their widths."""
        widths = {c.key: c.width for c in COLUMNS}
        if width < NARROW_WIDTH:
            widths.update(run=15, epoch=9, age=4, acc=6)
        available = width - 2  # the vertical scrollbar
        chosen = []
        for key in PRIORITY:
            cost = widths[key] + 2  # cell padding 1 on each side
            if cost <= available:
                chosen.append(key)
                available -= cost
        return [c.key for c in COLUMNS if c.key in chosen], widths

    def _setup_columns(self, width: int) -> None:
        keys, widths = self.fit_columns(width)
        narrow = width < NARROW_WIDTH
        if keys == self.keys and widths == self.widths:
            return
        self.narrow = narrow
        table = self.table
        cursor = table.cursor_run_id()
        table.clear(columns=True)
        self.keys, self.widths = keys, widths
        for key in self.keys:
            col = COLUMN_BY_KEY[key]
            label = "acc" if (narrow and key == "acc") else col.label
            table.add_column(self._label(key, label), key=key, width=self.widths[key])
        self._cells.clear()
        self._visible.clear()
        self.rebuild(cursor=cursor)

    def _label(self, key: str, label: str | None = None) -> Text:
        col = COLUMN_BY_KEY[key]
        label = label if label is not None else (("acc" if self.narrow else col.label) if key == "acc" else col.label)
        text = Text(label, justify=col.justify)
        if key == self.sort_key:
            text.append("▼" if self.sort_reverse else "▲", style=SELECT_STYLE)
        return text

    def on_resize(self) -> None:
        self._setup_columns(self.app.size.width)

    # -- data -----------------------------------------------------------------------------------------------------
    FIRST_ROWS = 80  # rows added before the first paint; the rest follow in chunks, a frame apart
    CHUNK_ROWS = 400

    def rebuild(self, cursor: str | None = None) -> None:
        """Re-fill the table from the model (filter, sort or columns changed). The rows on screen come first;
        the others are added in chunks after the next frames, so 1,000 runs paint at once."""
        model = self.app.model
        table = self.table
        if cursor is None:
            cursor = table.cursor_run_id()
        table.clear()
        self._cells.clear()
        self._pending.clear()
        now = self.clock()
        runs = [run for run in model.runs.values() if self.filter.matches(run)]
        runs.sort(key=self._sort_func(now), reverse=self.sort_reverse)
        order = [run["id"] for run in runs]
        self._visible = set(order)
        self._fill_generation += 1
        self._fill_queue = order
        self._fill(self._fill_generation, self.FIRST_ROWS, cursor)
        self.update_info()

    @property
    def filling(self) -> bool:
        """True while rows are still being added after a rebuild."""
        return bool(self._fill_queue)

    def _fill(self, generation: int, count: int, cursor: str | None) -> None:
        if generation != self._fill_generation or not self._fill_queue:
            return
        chunk, self._fill_queue = self._fill_queue[:count], self._fill_queue[count:]
        model, selected, table = self.app.model, self.app.selected, self.table
        now = self.clock()
        for run_id in chunk:
            run = model.runs.get(run_id)
            if run is None:
                self._visible.discard(run_id)
                continue
            cells = run_cells(run, now, self.keys, run_id in selected, self.widths)
            self._cells[run_id] = cells
            table.add_row(*cells, key=run_id)
        if cursor is not None and cursor in self._cells:
            self._restore_cursor(cursor)
            cursor = None
        if self._fill_queue:
            self.call_after_refresh(self._fill, generation, self.CHUNK_ROWS, cursor)
        elif self._resort_after_fill:
            self._resort_after_fill = False
            self._resort()

    def _sort_func(self, now: float):
        col = COLUMN_BY_KEY[self.sort_key]
        missing_last = self.sort_reverse

        def key(run: dict):
            value = col.sort(run, now)
            tie = (run.get("experiment_id") or "", run.get("idx") or 0)
            if value is None:
                return (1 if not missing_last else 0, 0, tie)
            return (0 if not missing_last else 1, value, tie)

        return key

    def _resort(self) -> None:
        """Sort the table rows, re-rendering only rows that moved (see RunsTable.reorder); a no-op when the order
        stays the same (DataTable.sort invalidated every cached cell after each poll, even then)."""
        now = self.clock()
        runs = self.app.model.runs
        func = self._sort_func(now)
        key = lambda rid: func(runs[rid]) if rid in runs else (2, 0, ("", 0))  # noqa: E731
        table = self.table
        current = [table._row_locations.get_key(i) for i in range(len(table._row_locations))]
        wanted = sorted(table._data, key=lambda row_key: key(row_key.value), reverse=self.sort_reverse)
        if wanted != current:  # (the same stable sort of the same sequence as DataTable.sort)
            table.reorder(wanted)

    def _restore_cursor(self, run_id: str | None) -> None:
        table = self.table
        if run_id is not None and run_id in self._visible:
            try:
                table.move_cursor(row=table.get_row_index(run_id), animate=False)
            except Exception:
                pass

    def apply_changes(self, changed: set[str], removed: set[str]) -> None:
        """Update rows of changed runs, add new matching runs, drop removed or no-longer-matching ones."""
        model, selected = self.app.model, self.app.selected
        table = self.table
        new = [rid for rid in changed if rid not in self._visible and rid in model.runs]
        if len(new) > self.FIRST_ROWS:  # many new runs (the first poll): refill in display order, in chunks
            self.rebuild()
            return
        now = self.clock()
        added = moved = False
        sort_col = COLUMN_BY_KEY[self.sort_key]
        for run_id in removed:
            if run_id in self._cells:
                table.remove_row(run_id)
                self._cells.pop(run_id, None)
            self._visible.discard(run_id)
        for run_id in changed:
            run = model.runs.get(run_id)
            if run is None:
                continue
            match = self.filter.matches(run)
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
                    continue
                moved |= self._update_row(run, now, run_id in selected)
            elif match and self._fill_queue:  # a rebuild is still adding rows: queue it, sort at the end
                self._fill_queue.append(run_id)
                self._visible.add(run_id)
                self._resort_after_fill = True
            elif match:
                cells = run_cells(run, now, self.keys, run_id in selected, self.widths)
                self._cells[run_id] = cells
                table.add_row(*cells, key=run_id)
                self._visible.add(run_id)
                added = True
        if now - self._age_tick >= 5.0:
            self.refresh_ages(now, flush=False)
        self._flush()
        if (added or (moved and sort_col.key not in ("run", "exp", "age", "net", "opt", "lr"))) \
                and not self._fill_queue:
            self._resort()
        if changed or removed:
            self.update_info()

    def _update_row(self, run: dict, now: float, selected: bool) -> bool:
        """Update the differing cells of one visible row; True when the sort column's cell changed."""
        run_id = run["id"]
        cells = run_cells(run, now, self.keys, selected, self.widths)
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
        """Ages tick without any store change: refresh the cells whose text changed (minutes rarely do)."""
        now = self.clock() if now is None else now
        self._age_tick = now
        if "age" not in self.keys:
            return
        runs, index = self.app.model.runs, self.keys.index("age")
        for run_id in self._visible:
            run = runs.get(run_id)
            cells = self._cells.get(run_id)
            if run is None or cells is None:
                continue
            created = run.get("created")
            new = Text(format_age(now - created if created else None), style="dim", justify="right")
            if new != cells[index]:
                cells[index] = new
                self._pending.setdefault(run_id, {})["age"] = new
        if flush:
            self._flush()

    def refresh_selection(self, run_ids: Iterable[str]) -> None:
        selected = self.app.selected
        for run_id in run_ids:
            cells = self._cells.get(run_id)
            if cells is None:
                continue
            mark = Text(MARK, style=SELECT_STYLE) if run_id in selected else " "
            cells[0] = mark
            self._pending.setdefault(run_id, {})["sel"] = mark
        self._flush()
        self.update_info()

    def update_info(self) -> None:
        model = self.app.model
        total, shown = len(model.runs), len(self._visible)
        text = Text()
        text.append(f"{shown} of {total} runs" if shown != total else f"{total} runs", style="bold")
        n_sel = len(self.app.selected)
        if n_sel:
            text.append(f"  {n_sel} selected", style=SELECT_STYLE)
        text.append(f"  sorted by {COLUMN_BY_KEY[self.sort_key].label} {'▼' if self.sort_reverse else '▲'}",
                    style="dim")
        if self.filter:
            text.append(f"  filter: {self.filter.text}", style="italic")
        self.query_one("#runs-info", Static).update(text)

    def show_empty(self, message: str | None) -> None:
        """The empty state (no store or no runs): how to launch."""
        empty = self.query_one("#runs-empty", Static)
        has_runs = bool(self.app.model.runs)
        self.set_class(not has_runs, "-empty")
        if has_runs:
            return
        runs_dir = str(self.app.runs_dir)
        text = Text()
        text.append("No runs yet", style="bold")
        if message:
            text.append(f"\n{message}", style="dim")
        text.append("\n\nPress ")
        text.append("6", style="bold reverse")
        text.append(" (Launch) to start an experiment from experiments/*.toml or the form,\nor from a shell:\n\n")
        text.append(f"  mxdash run experiments/optimizers.toml --runs-dir {runs_dir}\n", style="bold")
        text.append("\nRuns appear here live as they are created.", style="dim")
        empty.update(text)

    def cursor_run_id(self) -> str | None:
        return self.table.cursor_run_id()

    def visible_run_ids(self) -> list[str]:
        table = self.table
        return [row.key.value for row in table.ordered_rows] if table.row_count else []

    # -- events / actions -----------------------------------------------------------------------------------------
    @on(Input.Changed, "#runs-filter")
    def _filter_changed(self, event: Input.Changed) -> None:
        self.set_filter(event.value, from_input=True)

    @on(Input.Submitted, "#runs-filter")
    def _filter_submitted(self) -> None:
        self.table.focus()

    def set_filter(self, text: str, from_input: bool = False) -> None:
        new = RunFilter(text)
        if not from_input:
            self.query_one("#runs-filter", Input).value = text  # posts Changed -> set_filter again (same text)
        if new.text == self.filter.text:
            return
        self.filter = new
        self.rebuild()

    def set_sort(self, key: str, reverse: bool | None = None) -> None:
        if key not in SORTABLE:
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

    @on(DataTable.HeaderSelected, "#runs-table")
    def _header_clicked(self, event: DataTable.HeaderSelected) -> None:
        self.set_sort(event.column_key.value)

    @on(DataTable.RowHighlighted, "#runs-table")
    def _highlighted(self, event: DataTable.RowHighlighted) -> None:
        self.post_message(self.CursorMoved(event.row_key.value if event.row_key else None))

    @on(DataTable.RowSelected, "#runs-table")
    def _row_selected(self, event: DataTable.RowSelected) -> None:
        if event.row_key is not None:
            self.app.open_detail(event.row_key.value)

    @on(RunsTable.ToggleSelect)
    def _toggle(self, event: RunsTable.ToggleSelect) -> None:
        self.app.toggle_selected([event.run_id])

    def action_focus_filter(self) -> None:
        self.query_one("#runs-filter", Input).focus()

    def action_select_all(self) -> None:
        visible = self.visible_run_ids()
        if visible and all(rid in self.app.selected for rid in visible):
            self.app.set_selected(set(self.app.selected) - set(visible))
        else:
            self.app.set_selected(set(self.app.selected) | set(visible))

    def action_clear_selection(self) -> None:
        self.app.set_selected(set())

    def target_runs(self) -> list[str]:
        """The runs an action applies to: the selection, else the highlighted run."""
        if self.app.selected:
            return sorted(self.app.selected, key=lambda rid: _sort_id(rid))
        cursor = self.cursor_run_id()
        return [cursor] if cursor else []

    def action_stop(self) -> None:
        self.app.stop_runs(self.target_runs())

    def action_resume(self) -> None:
        self.app.resume_runs(self.target_runs())

    def action_sort_next(self) -> None:
        index = SORTABLE.index(self.sort_key) if self.sort_key in SORTABLE else -1
        candidates = [k for k in SORTABLE if k in self.keys]
        following = [k for k in SORTABLE[index + 1:] if k in candidates] + candidates
        self.set_sort(following[0], reverse=False)

    def action_sort_reverse(self) -> None:
        self.set_sort(self.sort_key, reverse=not self.sort_reverse)

    def action_compare(self) -> None:
        self.app.action_show_tab("compare")

    def key_escape(self) -> None:
        if self.query_one("#runs-filter", Input).has_focus:
            self.table.focus()


def _sort_id(run_id: str):
    head, _, tail = run_id.rpartition(".")
    return (head, int(tail)) if tail.isdigit() else (run_id, 0)


__all__ = ["RunsView", "RunsTable", "RunFilter", "run_cells", "format_age", "progress_cell", "STATUSES"]
