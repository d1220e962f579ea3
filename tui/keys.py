"""The keys of a screen, ranked as `?` and the footer show them: the current view's own keys first (nearest the
focus first; within a widget, its own class's keys before the ones it inherits from our base classes), then the
app's keys that work everywhere, then the keys of Textual's widgets (DataTable's cursor and paging, the tab bar,
focus and copy) under a name of their own.

Textual merges every class's BINDINGS into one map per widget, and `screen.active_bindings` says only which widget
a key belongs to, not which class declared it: that is found here by walking the widget's MRO.
"""
from __future__ import annotations

from dataclasses import dataclass

from textual.binding import Binding

# Names of the sections of Textual's own widget keys (a Textual class not named here: "<Class> keys").
TEXTUAL_SECTIONS = {"DataTable": "Table navigation", "Tabs": "Tab bar", "Screen": "Focus and copy",
                    "ScrollableContainer": "Scrolling", "Widget": "Scrolling", "Log": "Scrolling",
                    "ScrollView": "Scrolling", "OptionList": "List navigation", "Input": "Text input"}
VIEWS = {"RunsTable": "Runs", "RunsView": "Runs", "CurvesView": "Curves", "LrEffectsView": "LR effects",
         "DeadReluView": "Dead ReLUs", "CompareView": "Compare", "LaunchView": "Launch", "BoundaryView": "Boundaries",
         "RunDetailScreen": "Run detail", "MainScreen": "Screen", "HelpScreen": "Help"}
EVERYWHERE = "Everywhere"


@dataclass(frozen=True)
class Key:
    key: str  # the key Textual matches ("question_mark")
    display: str  # what the user reads ("?")
    description: str
    binding: Binding
    enabled: bool
    tooltip: str
    section: str  # "Runs", "Everywhere", "Table navigation", ...
    ours: bool  # declared by an mxdash class (not one of Textual's widgets)
    rank: tuple  # sort key: smaller first


def key_display(binding: Binding) -> str:
    return binding.key_display or binding.key.replace("question_mark", "?").replace("slash", "/")


def declaring_class(node, binding: Binding) -> tuple[type, int, int]:
    """(class, its depth in the MRO, the binding's index in its BINDINGS) of the class that declares `binding` for
    `node`: the most derived one (Textual lets a subclass's binding of a key replace its base's)."""
    for depth, cls in enumerate(type(node).__mro__):
        for index, declared in enumerate(cls.__dict__.get("BINDINGS", ())):
            declared = declared if isinstance(declared, Binding) else Binding(*declared)
            if declared.action == binding.action and binding.key in declared.key.split(","):
                return cls, depth, index
    return type(node), 0, 0


def is_ours(cls: type) -> bool:
    return cls.__module__.split(".")[0] == "tui"


def screen_keys(screen) -> list[Key]:
    """Every active key of `screen` with a description, best first (see the module docstring)."""
    focused = screen.focused
    chain = list(focused.ancestors_with_self) if focused is not None else [screen, screen.app]  # as Textual's
    keys = []
    for active in screen.active_bindings.values():
        binding, node = active.binding, active.node
        if not binding.description or binding.system:
            continue
        cls, depth, index = declaring_class(node, binding)
        ours = is_ours(cls)
        at = chain.index(node) if node in chain else len(chain)
        if node is screen.app and ours:
            section, tier = EVERYWHERE, 1
        elif ours:
            section, tier = VIEWS.get(type(node).__name__, type(node).__name__), 0
        else:
            section, tier = TEXTUAL_SECTIONS.get(cls.__name__, f"{cls.__name__} keys"), 2
        keys.append(Key(active.binding.key, key_display(binding), binding.description, binding, active.enabled,
                        active.tooltip, section, ours, (tier, at, depth, index)))
    return sorted(keys, key=lambda k: k.rank)


def sections(keys: list[Key]) -> list[tuple[str, list[Key]]]:
    """The ranked keys grouped by section, in rank order."""
    grouped: dict[str, list[Key]] = {}
    for key in keys:
        grouped.setdefault(key.section, []).append(key)
    return list(grouped.items())
