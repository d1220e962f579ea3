"""The footer: the most important keys of the current view that fit the width, and always `?` for the rest.

Textual's Footer shows every `show=True` binding in the order of the binding chain and lets the line run off the
right edge (at 80 columns the Curves footer ended "x X axis  l Log▏", with `?` and the view's own keys cut off).
This one ranks the keys as `?` does (tui.keys: the view's own first), keeps whole keys while they fit next to `?`
and the palette key, and recomposes when the width changes."""
from __future__ import annotations

from rich.cells import cell_len
from textual import events
from textual.app import ComposeResult

from tui._textual_hacks import CachedFooter
from tui.keys import screen_keys

HELP_ACTION = "help"
KEY_PADDING = 3  # a FooterKey is " key description ": one cell each side of the key, one after the description
PALETTE_EXTRA = 2  # the palette key also has a left border and a right padding of one cell (Footer's CSS)


def key_width(display: str, description: str) -> int:
    return cell_len(display) + cell_len(description) + KEY_PADDING


class KeysFooter(CachedFooter):
    def fitted(self) -> list[tuple]:
        """(key, display, description, action, enabled, tooltip) of the keys shown, in rank order."""
        if not self.bindings_ready:
            return []
        app = self.app
        ranked, actions = [], set()
        for key in screen_keys(self.screen):
            if key.binding.show and key.binding.action not in actions:
                actions.add(key.binding.action)
                ranked.append((key.key, app.get_key_display(key.binding), key.description, key.binding.action,
                               key.enabled, key.tooltip))
        width = (self.size.width or app.size.width) - self._palette_width()
        help_keys = [entry for entry in ranked if entry[3] == HELP_ACTION]
        room = width - sum(key_width(entry[1], entry[2]) for entry in help_keys)
        shown = []
        for entry in ranked:
            if entry[3] == HELP_ACTION:
                continue
            needed = key_width(entry[1], entry[2])
            if needed > room:
                break  # the rest is less important than what did not fit: `?` lists it
            room -= needed
            shown.append(entry)
        return shown + help_keys  # `?` last: "... ? Keys" reads as "and the rest"

    def _palette(self):
        app = self.app
        if not (self.show_command_palette and app.ENABLE_COMMAND_PALETTE):
            return None
        return self.screen.active_bindings.get(app.COMMAND_PALETTE_BINDING)

    def _palette_width(self) -> int:
        entry = self._palette()
        if entry is None:
            return 0
        return key_width(self.app.get_key_display(entry.binding), entry.binding.description) + PALETTE_EXTRA

    def _signature(self) -> tuple:
        if not self.bindings_ready:
            return ()
        entry = self._palette()
        palette = None if entry is None else (entry.binding.key, entry.binding.description, entry.enabled)
        return tuple(self.fitted()), palette, self.compact

    def compose(self) -> ComposeResult:
        if not self.bindings_ready:
            return
        # `compact` is given to each key as it is made, not data-bound as Footer does: the binding set it again at
        # mount and its watcher restyled every key, ~20% of the first switch to a view (its keys are new then).
        # The signature holds `compact`, so a change of it makes a new set.
        for key, display, description, action, enabled, tooltip in self.fitted():
            widget = self.footer_key(key, display, description, action, disabled=not enabled, tooltip=tooltip,
                                     classes="-compact" if self.compact else "")
            widget.set_reactive(type(widget).compact, self.compact)
            yield widget
        entry = self._palette()
        if entry is not None:
            binding = entry.binding
            yield self.footer_key(binding.key, self.app.get_key_display(binding), binding.description, binding.action,
                            classes="-command-palette", disabled=not entry.enabled,
                            tooltip=binding.tooltip or binding.description)

    def on_resize(self, event: events.Resize) -> None:
        if event.size.width != self._width:  # what fits changed (recompose shows a cached set when it did not)
            self._width = event.size.width
            self.call_after_refresh(self.recompose)

    _width = 0
