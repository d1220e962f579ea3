"""`?`: every key of the current view (what the footer has no room for), read from the declared bindings of the
screen underneath: its focused view first, then the ones that work everywhere."""
from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

GROUP_NAMES = {"MxdashApp": "everywhere", "RunsTable": "runs table", "RunsView": "runs", "CurvesView": "curves",
               "LrEffectsView": "LR effects", "DeadReluView": "dead ReLUs", "CompareView": "compare",
               "LaunchView": "launch", "BoundaryView": "boundaries", "RunDetailScreen": "run detail", "MainScreen": "screen"}


def key_name(binding: Binding) -> str:
    return binding.key_display or binding.key.replace("question_mark", "?").replace("slash", "/")


def screen_keys(screen: Screen) -> list[tuple[str, list[tuple[str, str]]]]:
    """[(group, [(key, description)])]: the screen's active bindings by the node that declares them, nearest the
    focus first, the app's last."""
    groups: dict[str, list[tuple[str, str]]] = {}
    for key, active in screen.active_bindings.items():
        binding = active.binding
        if not binding.description or binding.system:
            continue
        name = GROUP_NAMES.get(type(active.node).__name__, type(active.node).__name__)
        groups.setdefault(name, []).append((key_name(binding), binding.description))
    ours = set(GROUP_NAMES.values()) - {"everywhere", "screen"}
    # the view's own keys first, then the ones that work everywhere, then Textual's widget keys (scrolling...)
    ordered = sorted(groups.items(), key=lambda item: (0 if item[0] in ours else 1 if item[0] == "everywhere" else 2))
    return [(name, sorted(set(keys))) for name, keys in ordered]


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "dismiss", "Close", show=False)]

    def __init__(self, under: Screen) -> None:
        super().__init__()
        self.groups = screen_keys(under)

    def compose(self) -> ComposeResult:
        table = Table(box=None, show_header=False, padding=(0, 2), title="keys", title_justify="left")
        table.add_column(style="bold", no_wrap=True)
        table.add_column()
        for name, keys in self.groups:
            table.add_row(Text(name, style="bold underline"), "")
            for key, description in keys:
                table.add_row(Text(key), Text(description))
            table.add_row("", "")
        table.add_row(Text("ctrl+p", style="bold"), Text("every action, by name (command palette)"))
        with VerticalScroll(id="help-box"):
            yield Static(table, id="help-body")
            yield Static(Text("escape or ? closes", style="dim"))

    def help_text(self) -> str:
        return "\n".join(f"{name}: " + "; ".join(f"{key} {description}" for key, description in keys)
                         for name, keys in self.groups)

    def action_dismiss(self, result=None) -> None:
        self.dismiss(None)
