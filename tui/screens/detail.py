"""Run detail: overview (status, error and traceback, device, host, versions, git commit, metrics, the detected
events), the resolved config, the net summary (layers, output shapes, parameters), the latest confusion matrix with
precision / recall / F1 per class (experiments/lesson_views.py, as `mxdash show` prints it) and the live log tail, in
tabs."""
from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.worker import get_current_worker
from textual.widgets import Log, Static, TabbedContent, TabPane

from experiments.lesson_views import EVENT_STYLES, render_confusion
from experiments.metrics import (ARTIFACT_CONFUSION, DEAD_PREFIX, GRAD_NORM, LR, RUNNING, STALE, TRAIN_LOSS, VAL_ACC,
                                 VAL_LOSS, VAL_MACRO_F1, display_status)
from experiments.report import (MISSING, flat_config, format_duration, format_number, format_percent, format_time,
                                format_value, run_duration, sparkline)
from tui.status import STALE_STYLE, status_text
from tui.model import row_json
from tui.poller import LogTail
from tui.widgets.footer import KeysFooter
from tui.widgets.header import TopBar

LOG_POLL_S = 1.0
MAX_LOG_LINES = 5000


def overview(run: dict, model, now: float, width: int, events: list = ()) -> Group:
    title = Text.assemble((run["id"], "bold"), "  ", status_text(display_status(run, now)))
    if run.get("stop_requested") and run.get("status") == RUNNING:
        title.append("  (stop requested)", style="yellow")
    info = Table.grid(padding=(0, 2))
    info.add_column(style="dim", no_wrap=True)
    info.add_column()
    versions = row_json(run, "versions") or {}
    summary = row_json(run, "summary") or {}
    total = summary.get("total_params") if isinstance(summary, dict) else None
    steps = f"{run.get('step') or 0}" + (f" / {run['total_steps']}" if run.get("total_steps") else "")
    epochs = format_number(run.get("epoch"), ".2f") + (f" / {run['epochs']}" if run.get("epochs") else "")
    fields = [
        ("experiment", run.get("experiment_id")),
        ("net / data", f"{run.get('net') or MISSING} on {run.get('dataset') or MISSING}"),
        ("optimizer", f"{run.get('optimizer') or MISSING}  lr {format_number(run.get('lr'), '.3g')}"
                      f"  seed {run.get('seed') if run.get('seed') is not None else MISSING}"),
        ("device", run.get("device")),
        ("host / pid", f"{run.get('host') or MISSING} / {run.get('pid') or MISSING}"),
        ("created", format_time(run.get("created"))),
        ("started", format_time(run.get("started"))),
        ("ended", format_time(run.get("ended"))),
        ("heartbeat", format_time(run.get("heartbeat"))),
        ("last progress", format_time(run.get("progress_at"))),
        ("duration", format_duration(run_duration(run, now))),
        ("steps", steps),
        ("epochs", epochs),
        ("train loss", format_number(run.get("train_loss"))),
        ("val loss", f"{format_number(run.get('val_loss'))}  (best {format_number(run.get('best_val_loss'))})"),
        ("val acc", f"{format_percent(run.get('val_acc'))}  (best {format_percent(run.get('best_val_acc'))})"),
        ("samples/s", format_number(run.get("samples_per_s"), ",.0f")),
        ("params", f"{total:,}" if isinstance(total, int) else None),
        ("versions", ", ".join(f"{k} {v}" for k, v in versions.items()) if isinstance(versions, dict) else None),
        ("git commit", run.get("git_commit")),
    ]
    for name, value in fields:
        info.add_row(name, Text(MISSING if value in (None, "") else str(value)))
    problems = []
    if display_status(run, now) == STALE:
        since = run.get("progress_at") or run.get("started") or now
        problems.append(Text(f"stale: no training progress for {format_duration(now - since)} (worker frozen, hung "
                             "or swapping?)", style=STALE_STYLE))
    if run.get("diverged_step") is not None:
        problems.append(Text(f"diverged at step {run['diverged_step']}", style="bold dark_orange"))
    if run.get("error"):
        problems.append(Text.assemble(("error: ", "bold red"), (str(run["error"]), "red")))
    shown = events_text([e for e in events if e.kind != "diverged"])  # a divergence is a problem already
    parts = [title, *problems, *([shown] if shown else []), info]  # problems first: visible at 80x24 too
    if run.get("traceback"):
        parts.extend([Text(""), Text(str(run["traceback"]).rstrip(), style="red")])
    curves = _curves(run["id"], model, max(10, width - 40))
    if curves is not None:
        parts.extend([Text(""), curves])
    return Group(*parts)


def _curves(run_id: str, model, width: int) -> Table | None:
    series = model.series.get(run_id, {})
    keys = [k for k in (TRAIN_LOSS, VAL_LOSS, VAL_ACC, VAL_MACRO_F1, LR, GRAD_NORM) if k in series]
    keys += sorted(k for k in series if k.startswith(DEAD_PREFIX))
    if not keys:
        return None
    table = Table(title="curves", title_justify="left", show_header=False, box=None, padding=(0, 1))
    table.add_column(style="dim", no_wrap=True)
    table.add_column(no_wrap=True)
    table.add_column(style="dim", no_wrap=True)
    for key in keys:
        s = series[key]
        table.add_row(key, sparkline(s.value, min(width, 60)),
                      f"last {format_number(s.last())}  ({len(s)} pts)" if len(s) else "no data")
    return table


def confusion_body(model, run_id: str, width: int):
    """The latest confusion matrix of the run as a heat table with precision / recall / F1 per class."""
    found = model.latest_artifact(run_id, ARTIFACT_CONFUSION)
    if found is None:
        return Text("No confusion matrix for this run (yet): classifiers record one at every validation.",
                    style="dim")
    return render_confusion(found.payload, found.epoch, width)


def events_text(events: list) -> Text | None:
    if not events:
        return None
    text = Text("events", style="bold")
    for event in events:
        text.append("\n• ", style="dim")
        text.append(event.text, style=EVENT_STYLES.get(event.kind, ""))
    return text


def config_table(config: dict) -> Table:
    table = Table(show_header=False, box=None, padding=(0, 2))
    table.add_column(style="bold", no_wrap=True)
    table.add_column(style="dim", no_wrap=True)
    table.add_column()
    for section, body in (config or {}).items():
        items = list(flat_config(body).items()) if isinstance(body, dict) else [("", body)]
        for i, (key, value) in enumerate(items):
            table.add_row(section if i == 0 else "", Text(key), Text(format_value(value)))
    return table


def net_table(summary: dict | None) -> Table | Text:
    if not isinstance(summary, dict) or not summary:
        return Text("No net summary yet (the worker writes it when the run starts).", style="dim")
    layers = summary.get("layers")
    table = Table(box=None, padding=(0, 2), show_footer=True)
    table.add_column("layer", footer="total")
    table.add_column("type", style="dim")
    table.add_column("output shape")
    total = summary.get("total_params")
    table.add_column("params", justify="right", footer=f"{total:,}" if isinstance(total, int) else "")
    for layer in layers if isinstance(layers, list) else []:
        shape = layer.get("output_shape")
        params = layer.get("params")
        table.add_row(Text(str(layer.get("name", ""))), Text(str(layer.get("type", ""))),
                      Text(" x ".join(str(d) for d in shape) if isinstance(shape, list) else str(shape or "")),
                      f"{params:,}" if isinstance(params, int) else str(params or ""))
    extra = Table.grid(padding=(0, 2))
    extra.add_column(style="dim")
    extra.add_column()
    for key, value in summary.items():
        if key not in ("layers", "total_params"):
            extra.add_row(key, Text(format_value(value)))
    return Group(table, Text(""), extra)  # type: ignore[return-value]


class RunDetailScreen(Screen):
    """One run, live: the app calls `run_changed` when its row or series change; the log is followed here."""

    BINDINGS = [
        Binding("escape,q", "dismiss_detail", "Back"),
        # [ and ] switch the tabs whatever has the focus (left/right only do when the tab bar has it: the scrolled
        # bodies take them for scrolling sideways)
        Binding("left_square_bracket", "prev_tab", "Prev tab", key_display="["),
        Binding("right_square_bracket", "next_tab", "Next tab", key_display="]"),
        Binding("s", "stop", "Stop"),
        Binding("r", "resume", "Resume"),
        Binding("f", "toggle_follow", "Follow log"),
        Binding("left", "prev_tab", "Prev tab", show=False),
        Binding("right", "next_tab", "Next tab", show=False),
    ]

    TABS = ("detail-overview", "detail-config", "detail-net", "detail-confusion", "detail-log")

    def __init__(self, run_id: str) -> None:
        super().__init__()
        self.run_id = run_id
        self._tail: LogTail | None = None
        self.follow = True
        self._config_shown = None
        self._summary_shown = None
        self._confusion_shown = None
        self._events: list = []
        self._events_key = None

    def compose(self) -> ComposeResult:
        yield TopBar(str(self.app.runs_dir), id="topbar")
        with TabbedContent(id="detail-tabs"):
            with TabPane("Overview", id="detail-overview"):
                with VerticalScroll():
                    yield Static("", id="detail-overview-body")
            with TabPane("Config", id="detail-config"):
                with VerticalScroll():
                    yield Static("", id="detail-config-body")
            with TabPane("Net", id="detail-net"):
                with VerticalScroll():
                    yield Static("", id="detail-net-body")
            with TabPane("Confusion", id="detail-confusion"):
                with VerticalScroll():
                    yield Static("", id="detail-confusion-body")
            with TabPane("Log", id="detail-log"):
                yield Log(id="detail-log-body", max_lines=MAX_LOG_LINES, auto_scroll=True)
        yield KeysFooter()

    def on_mount(self) -> None:
        self.sub_title = self.run_id
        self.run_changed()
        path = self.app.log_path(self.run_id)
        if path is not None:
            self._tail = LogTail(path)
            self._read_log()
            self.set_interval(LOG_POLL_S, self._read_log)
        else:
            self.query_one("#detail-log-body", Log).write_line("(no log file for this run)")
        self.app.refresh_topbar(self.query_one(TopBar))

    def run_changed(self) -> None:
        run = self.app.model.runs.get(self.run_id)
        body = self.query_one("#detail-overview-body", Static)
        if run is None:
            body.update(Text(f"run {self.run_id} is not in the store (deleted?)", style="red"))
            return
        body.update(overview(run, self.app.model, self.app.clock(), self.app.size.width, self._events))
        self._update_events(run)
        confusion = self.app.model.latest_artifact(self.run_id, ARTIFACT_CONFUSION)
        if confusion is not self._confusion_shown or self._confusion_shown is None:
            self._confusion_shown = confusion
            self.query_one("#detail-confusion-body", Static).update(
                confusion_body(self.app.model, self.run_id, self.app.size.width - 4))
        if run.get("config") is not self._config_shown:
            self._config_shown = run.get("config")
            self.query_one("#detail-config-body", Static).update(config_table(run.get("config") or {}))
        if run.get("summary") is not self._summary_shown:
            self._summary_shown = run.get("summary")
            self.query_one("#detail-net-body", Static).update(net_table(row_json(run, "summary")))

    def _update_events(self, run: dict) -> None:
        """Detect the run's events in a thread (a 100k-point loss series takes ~20 ms to scan) when its series
        changed; the overview shows them when they are back."""
        series = self.app.model.series.get(self.run_id, {})
        key = (id(run), tuple((k, s.version) for k, s in series.items()))
        if key == self._events_key:
            return
        self._events_key = key
        arrays = {k: {"step": s.step, "epoch": s.epoch, "value": s.value} for k, s in series.items()
                  if k in (TRAIN_LOSS, VAL_LOSS) or k.startswith(DEAD_PREFIX)}
        self._events_worker(dict(run), arrays)

    @work(thread=True, exclusive=True, group="detail-events", exit_on_error=False)
    def _events_worker(self, row: dict, arrays: dict) -> None:
        from experiments.annotations import run_annotations
        from tui.views.events import as_tuples

        worker = get_current_worker()
        events = run_annotations(row, {key: as_tuples(values) for key, values in arrays.items()})
        if not worker.is_cancelled:
            self.app.call_from_thread(self._show_events, events)

    def _show_events(self, events: list) -> None:
        if events != self._events and self.is_mounted:
            self._events = events
            run = self.app.model.runs.get(self.run_id)
            if run is not None:
                self.query_one("#detail-overview-body", Static).update(
                    overview(run, self.app.model, self.app.clock(), self.app.size.width, events))

    @work(thread=True, exclusive=True, group="log-tail", exit_on_error=False)
    def _read_log(self) -> None:
        worker = get_current_worker()
        tail = self._tail
        if tail is None:
            return
        lines = tail.read()
        if lines and not worker.is_cancelled:
            self.app.call_from_thread(self._append_log, lines)

    def _append_log(self, lines: list[str]) -> None:
        log = self.query_one("#detail-log-body", Log)
        log.auto_scroll = self.follow
        log.write_lines(lines)

    def action_dismiss_detail(self) -> None:
        self.app.pop_screen()

    def action_stop(self) -> None:
        self.app.stop_runs([self.run_id])

    def action_resume(self) -> None:
        self.app.resume_runs([self.run_id])

    def action_toggle_follow(self) -> None:
        self.follow = not self.follow
        self.notify(f"log follow {'on' if self.follow else 'off'}", timeout=2)

    def _switch(self, delta: int) -> None:
        tabs = self.query_one("#detail-tabs", TabbedContent)
        index = self.TABS.index(tabs.active) if tabs.active in self.TABS else 0
        tabs.active = self.TABS[(index + delta) % len(self.TABS)]

    def action_prev_tab(self) -> None:
        self._switch(-1)

    def action_next_tab(self) -> None:
        self._switch(1)


__all__ = ["RunDetailScreen", "overview", "config_table", "net_table"]
