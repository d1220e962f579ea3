"""A Footer that keeps the key widgets of each binding set it has shown, instead of rebuilding them.

Textual's Footer recomposes on every bindings change (every focus change: each tab switch, leaving the filter input):
it removes all its FooterKey widgets and mounts new ones, and mounting a dozen widgets (CSS matching, reactive
set-up, layout) cost 15-30 ms of a ~100 ms tab switch on 2 busy cores. The dashboard only ever shows a handful of
distinct binding sets (one per view and focused widget), so here each set's widgets are mounted once, as direct
children of the footer (the stock CSS and look apply unchanged), and a switch only toggles which set is displayed.
"""
from __future__ import annotations

from textual.compose import compose
from textual.widget import Widget
from textual.widgets import Footer

MAX_SETS = 16  # binding sets kept mounted (the least recently shown beyond this are removed)


class CachedFooter(Footer):
    """Drop-in Footer: same compose, same CSS, same widgets; binding sets are cached and toggled by `display`."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._sets: dict[tuple, list[Widget]] = {}  # signature -> its mounted widgets, least recently shown first
        self._shown: tuple | None = None
        self._busy = False  # a recompose is awaiting a mount
        self._again = False  # bindings changed meanwhile

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
            while len(self._sets) > MAX_SETS:
                oldest = next(iter(self._sets))
                stale = self._sets.pop(oldest)
                if stale:
                    await self.remove_children(stale)
