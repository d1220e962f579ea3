"""`?`: every key of the current view (what the footer has no room for), read from the declared bindings of the
screen underneath (tui.keys): the view's own keys first, then the ones that work everywhere, then the keys of
Textual's widgets (table navigation, the tab bar, focus)."""
from __future__ import annotations

import re

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

from tui.keys import Key, screen_keys, sections

PALETTE = "every action, by name (command palette)"


def help_sections(screen: Screen) -> list[tuple[str, list[tuple[str, str]]]]:
    """[(section, [(key, description)])], best first; one entry per action (escape,q: "escape/q")."""
    out = []
    for name, keys in sections(screen_keys(screen)):
        out.append((name, merge_digits(merge_same_action(keys))))
    return out


def merge_same_action(keys: list[Key]) -> list[tuple[str, str, str]]:
    """(display, description, action) with the keys bound to one action joined: "escape/q  Back"."""
    merged: dict[tuple[str, str], list[str]] = {}
    for key in keys:
        description = PALETTE if key.binding.action == "command_palette" else key.description
        merged.setdefault((key.binding.action, description), []).append(key.display)
    return [("/".join(dict.fromkeys(displays)), description, action)
            for (action, description), displays in merged.items()]


def merge_digits(entries: list[tuple[str, str, str]]) -> list[tuple[str, str]]:
    """Consecutive digit keys of the same action (`1`..`7` show_tab) as one line: "1-7  Runs, Curves, ...": the
    help fits 80x24 better."""
    out: list[tuple[str, str]] = []
    run: list[tuple[str, str, str]] = []

    def flush() -> None:
        if len(run) > 2:
            out.append((f"{run[0][0]}-{run[-1][0]}", "views: " + ", ".join(d for _, d, _ in run)))
        else:
            out.extend((k, d) for k, d, _ in run)
        run.clear()

    for entry in entries:
        name = re.sub(r"\(.*", "", entry[2])
        if entry[0].isdigit() and run and re.sub(r"\(.*", "", run[-1][2]) == name and int(entry[0]) == int(
                run[-1][0]) + 1:
            run.append(entry)
            continue
        flush()
        if entry[0].isdigit():
            run.append(entry)
        else:
            out.append(entry[:2])
    flush()
    return out


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close", show=False)]

    def __init__(self, under: Screen) -> None:
        super().__init__()
        self.groups = help_sections(under)

    def compose(self) -> ComposeResult:
        table = Table(box=None, show_header=False, padding=(0, 2), title="keys", title_justify="left")
        table.add_column(style="bold", no_wrap=True)
        table.add_column()
        for name, keys in self.groups:
            table.add_row(Text(name, style="bold underline"), "")
            for key, description in keys:
                table.add_row(Text(key), Text(description))
            table.add_row("", "")
        if not any(key == "ctrl+p" for _, keys in self.groups for key, _ in keys):
            table.add_row(Text("ctrl+p", style="bold"), Text("every action, by name (command palette)"))
        with VerticalScroll(id="help-box"):
            yield Static(table, id="help-body")
            yield Static(Text("escape or ? closes", style="dim"))

    def help_text(self) -> str:
        return "\n".join(f"{name}: " + "; ".join(f"{key} {description}" for key, description in keys)
                         for name, keys in self.groups)

    def action_dismiss(self, result=None) -> None:
        self.dismiss(None)
