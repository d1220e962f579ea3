"""Every use of a private Textual attribute, in one place, each with the measured reason beside it.

Pinned: Textual 8.2.8 (pyproject.toml pins it exactly). These reach into DataTable's render caches, Footer's
recompose and Static's content slots; a Textual upgrade must re-check each one (the tests render the table after
every kind of change and compare with a render from scratch: tests/test_tui_app.py).

- `FastDataTable`: a DataTable that keeps its render caches across tab switches, focus changes, live row updates
  and re-sorts (measured: a full redraw cost ~150 ms at 120x36 on 2 busy cores; one changed cell re-rendered every
  visible cell).
- `CachedFooter`: a Footer that mounts each binding set once and toggles them (recomposing cost 15-30 ms of a
  ~100 ms tab switch). It also exposes Footer's `_bindings_ready` and FooterKey (a private module) to
  tui/widgets/footer.py, which decides which keys fit.
- `PrerenderedStatic`: a Static whose content is converted and rendered into lines by a worker thread (10-20 ms per
  plot update on the UI thread otherwise).
"""
from __future__ import annotations

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual._two_way_dict import TwoWayDict
from textual.compose import compose
from textual.content import Content
from textual.geometry import Size
from textual.visual import Visual
from textual.widget import Widget, _RenderCache
from textual.widgets import DataTable, Footer, Static
from textual.widgets.data_table import ColumnKey, RowKey

MAX_FOOTER_SETS = 16  # binding sets kept mounted (the least recently shown beyond this are removed)


class FastDataTable(DataTable):
    """DataTable with fixed-width one-line rows whose caches survive what does not change their content.

    Subclasses add no private access: they call `update_rows`, `reorder`, `refresh_header`, `row_key_at`,
    `row_count_keys`, `clear_render_caches`."""

    # Every column has a fixed width and every row is one line high, so DataTable's measuring of cell contents
    # (all cells of new rows; a whole column whenever an updated cell gets narrower) is wasted work: it cost
    # ~0.3 s per 1,000 rows added and made live updates of a sorted column O(rows). Only the virtual size is needed,
    # and with one-line rows the height is the row count (`_total_row_height` walks every row's offset: filling
    # 10,000 rows in chunks of 400 spent 0.55 s there).
    def _update_dimensions(self, new_rows) -> None:
        header_height = self.header_height if self.show_header else 0
        width = sum(column.get_render_width(self) for column in self.columns.values())
        self.virtual_size = Size(width + self._row_label_column_width, len(self._data) + header_height)

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


    # -- public helpers over private state (so that no other module touches it) -----------------------------------
    def row_key_at(self, index: int):
        """The row key at display position `index` (None past the end)."""
        try:
            return self._row_locations.get_key(index)
        except Exception:
            return None

    def ordered_keys(self) -> list:
        """Row keys in display order."""
        return [self._row_locations.get_key(i) for i in range(len(self._row_locations))]

    def all_keys(self) -> list:
        return list(self._data)

    def clear_render_caches(self) -> None:
        """Drop every cache (tests compare the cached render with a render from scratch)."""
        self._clear_caches()
        self._update_count += 1


class CachedFooter(Footer):
    """Drop-in Footer: same compose, same CSS, same widgets; binding sets are cached and toggled by `display`."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._sets: dict[tuple, list[Widget]] = {}  # signature -> its mounted widgets, least recently shown first
        self._shown: tuple | None = None
        self._busy = False  # a recompose is awaiting a mount
        self._again = False  # bindings changed meanwhile

    @property
    def bindings_ready(self) -> bool:
        """The screen's bindings are known (Footer's private flag: composing before then shows nothing)."""
        return self._bindings_ready

    @staticmethod
    def footer_key(*args, **kwargs) -> Widget:
        """One key of the footer, as Footer makes it (FooterKey lives in a private module)."""
        from textual.widgets._footer import FooterKey

        return FooterKey(*args, **kwargs)

    def _signature(self) -> tuple:
        """What `compose` would show: the displayed bindings with their state, plus the palette key."""
        if not self._bindings_ready:
            return ()
        app = self.app
        shown = tuple(
            (binding.key, app.get_key_display(binding), binding.description, binding.action, enabled, tooltip,
             binding.group)
            for _node, binding, enabled, tooltip in self.screen.active_bindings.values() if binding.show)
        palette = None
        if self.show_command_palette and app.ENABLE_COMMAND_PALETTE:
            entry = self.screen.active_bindings.get(app.COMMAND_PALETTE_BINDING)
            if entry is not None:
                _node, binding, enabled, _tooltip = entry
                palette = (binding.key, binding.description, enabled, binding.tooltip)
        return shown, palette, self.compact, self.combine_groups

    async def recompose(self) -> None:
        if not self.is_attached or self._pruning:
            return
        if self._busy:
            self._again = True
            return
        self._busy = True
        try:
            while True:
                self._again = False
                await self._show_current()
                if not self._again or not self.is_attached:
                    break
        finally:
            self._busy = False

    async def _show_current(self) -> None:
        signature = self._signature()
        if signature == self._shown and signature in self._sets:
            return
        widgets = self._sets.pop(signature, None)
        async with self.batch():
            if widgets is None:
                widgets = list(compose(self))
                for widget in widgets:
                    widget.display = False
                if widgets:
                    await self.mount_all(widgets)
            self._sets[signature] = widgets  # now the most recently shown
            for other, old in self._sets.items():
                if other != signature:
                    for widget in old:
                        widget.display = False
            for widget in widgets:
                widget.display = True
            self._shown = signature
            while len(self._sets) > MAX_FOOTER_SETS:
                oldest = next(iter(self._sets))
                stale = self._sets.pop(oldest)
                if stale:
                    await self.remove_children(stale)


class PrerenderedStatic(Static):
    """A Static whose Rich Text is converted to Content and rendered into lines off the UI thread.

    Why: what Static does on the UI thread when a text is set (convert it to Content) and shown (render it into
    lines) cost 10-20 ms per plot update, and again on every switch back to the tab. `prerender` (any thread) does
    both; `show_prerendered` (UI thread) only swaps them in, and `_render_content` reuses the lines while visual,
    size and style are still the ones they were made for."""

    _prerendered: tuple | None = None  # (visual, size, visual style, strips)

    def prerender(self, text: Text, size, style, console) -> tuple | None:
        """(content, strips) for `text` at `size`, or None when Textual could not make them here."""
        try:
            content = Content.from_rich_text(text, console=console)
            strips = Visual.to_strips(self, content, size.width, size.height, style, apply_selection=False)
        except Exception:  # the UI thread renders it the usual way
            return None
        return content, strips

    def show_prerendered(self, text: Text, made: tuple | None, size, style) -> None:
        if made is None:
            self.update(text, layout=False)  # the pane's size does not depend on its text
            return
        content, strips = made
        self._Static__content = text  # what `content` returns (tests and callers read the Rich Text)
        self._Static__visual = content  # what `visualize(self, text)` would have returned
        self._prerendered = (content, size, style, strips)
        self.refresh()

    def _render_content(self) -> None:
        pre = self._prerendered
        if (pre is not None and pre[0] is self.visual and pre[1] == self.size and pre[2] == self.visual_style
                and self.text_selection is None):
            self._render_cache = _RenderCache(self.size, pre[3])
            self._dirty_regions.clear()
            return
        super()._render_content()
