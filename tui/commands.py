"""Command palette (ctrl+p): every key of the current view (from its declared bindings, so nothing the footer has
no room for is out of reach), the views, run actions, filters, sorts, colour keys, `open run ID`, `launch FILE`."""
from __future__ import annotations

from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider

from experiments.metrics import DISPLAY_STATUSES
from tui.keys import key_display as key_name
from tui.views import VIEWS
from tui.views.runs.columns import COLUMNS

MAX_RUN_HITS = 2000  # runs offered by "open run …" (fuzzy matching over more gets slow)


class MxdashCommands(Provider):
    """Views, the current view's keys, run actions, filters, sorts, `open run ID`, `launch FILE`."""

    def _key_commands(self) -> list[tuple[str, object, str]]:
        """One command per key of the screen the palette was opened on (its focused view's, then the app's)."""
        commands = []
        for key, active in self.screen.active_bindings.items():
            binding = active.binding
            if not binding.description or binding.system or binding.action.startswith("show_tab"):
                continue
            run = partial(self.app.run_action, binding.action, active.node)
            commands.append((f"{binding.description} ({key_name(binding)})", run, "key of this view"))
        return commands

    def _commands(self) -> list[tuple[str, object, str]]:
        app = self.app
        commands: list[tuple[str, object, str]] = []
        for spec in VIEWS:
            name = spec.label.split(" ", 1)[1]
            commands.append((f"View: {name}", partial(app.action_show_tab, spec.tab), f"switch to {name} ({spec.label[0]})"))
        commands += self._key_commands()
        commands += [
            ("Stop selected runs", app.action_stop_selected, "stop the selected (or highlighted) runs"),
            ("Resume selected runs", app.action_resume_selected, "resume stopped, lost or failed runs"),
            ("Select all shown runs", app.action_select_all, "select every run the filter shows"),
            ("Clear selection", app.action_clear_selection, "deselect all runs: the plots follow the filter"),
            ("Open highlighted run", app.action_open_cursor_run, "run detail: config, net, log"),
            ("Refresh now", app.action_refresh, "poll the store now (ctrl+r)"),
            ("Filter: clear", partial(app.set_runs_filter, ""), "show all runs"),
            ("Toggle dark mode", app.action_toggle_dark, "switch the light/dark theme"),
        ]
        for status in DISPLAY_STATUSES:
            commands.append((f"Filter: status {status}", partial(app.set_runs_filter, f"status:{status}"),
                             f"show only {status} runs"))
        for exp in sorted({run.get("experiment_id") or "" for run in app.model.runs.values()}, reverse=True):
            commands.append((f"Filter: experiment {exp}", partial(app.set_runs_filter, f"exp:{exp}"),
                             "show only this experiment's runs (the plots follow)"))
            commands.append((f"Select experiment {exp}", partial(app.select_experiment, exp),
                             "select all its runs (plots and Compare follow)"))
        for col in COLUMNS:
            if col.sortable:
                commands.append((f"Sort by {col.label}", partial(app.sort_runs, col.key), "sort the runs table"))
        for path in app.experiment_files():
            commands.append((f"Launch file {path.stem}", partial(app.open_launch, path), str(path)))
        return commands

    async def discover(self) -> Hits:
        for name, callback, help_text in self._commands():
            if not name.startswith(("Filter: experiment", "Select experiment", "Sort by", "Launch file ")):
                yield DiscoveryHit(name, callback, help=help_text)

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for name, callback, help_text in self._commands():
            score = matcher.match(name)
            if score > 0:
                yield Hit(score, matcher.highlight(name), callback, help=help_text)
        if len(query) >= 2:
            for run_id in list(self.app.model.runs)[:MAX_RUN_HITS]:
                name = f"Open run {run_id}"
                score = matcher.match(name)
                if score > 0:
                    yield Hit(score, matcher.highlight(name), partial(self.app.open_detail, run_id),
                              help="run detail")
