"""The Launch view: pick a shipped experiment file (preview its grid) or fill a form, then start it detached.

The preview uses only `experiments.config` parsing (`read_experiment_file`, `apply_overrides`, `plan_runs`): no
mxnet. Full validation happens in the `mxdash run --detach --json` subprocess; its error message is shown as is.

The form writes `<runs dir>/launched/<name>.toml` with tomli-w and launches that file like any other. The preview
plans the runs from the very text that will be written (parsed back with tomllib), and the launch writes exactly
that text: what the preview shows is what `mxdash run` gets (a hand-written TOML writer once produced
`optimizer = ["{'name': 'sgd', ...}"]` under a preview that looked fine).
"""
from __future__ import annotations

import re
from contextlib import suppress
from pathlib import Path

from rich.text import Text
from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.message import Message
from textual.suggester import SuggestFromList
from textual.widgets import Button, ContentSwitcher, Input, Label, OptionList, SelectionList, Static
from textual.widgets.option_list import Option

from experiments.config import (OPTIMIZER_KEYS, ConfigError, apply_overrides, experiment_name, plan_runs,
                                read_experiment_file)
from tui.cli_runner import CommandResult, launch_experiment, lrfind_result, start_lrfind
from tui.views.launch_fields import ParallelRuns, SetItemsInput
from tui.views.launch_plan import (DEFAULT_LRS, check_parallel, display_path, experiment_files, form_to_toml,
                                   known_values, parse_overrides, plan_text, render_preview)
from tui.sweep import overrides_text

__all__ = ["LaunchView", "experiment_files", "form_to_toml", "parse_overrides", "plan_text", "render_preview"]

FORM_OPTION = "__form__"


class LaunchView(Horizontal):
    """File list | preview + options, or the form; ctrl+l (or the button) launches."""

    BINDINGS = [
        Binding("ctrl+l", "launch", "Launch", priority=True),
        Binding("ctrl+t", "lrfind", "LR range test", priority=True),
        Binding("escape", "focus_files", "Back to list", show=False),
    ]
    RANGE_TEST_CHECK_S = 1.0

    class Launched(Message):
        def __init__(self, result: CommandResult) -> None:
            super().__init__()
            self.result = result

    class RangeTestDone(Message):
        """`mxdash lrfind` ended: `result.payload["tests"]` lists its tests (run, optimizer, status, suggestion)."""

        def __init__(self, result: CommandResult, path: Path) -> None:
            super().__init__()
            self.result, self.path = result, path

    def __init__(self, runs_dir, **kwargs) -> None:
        super().__init__(**kwargs)
        self.runs_dir = Path(runs_dir)
        self.files: list[Path] = []
        self.current: Path | None = None
        self._planned: tuple[dict, list[dict], str] | None = None  # raw, runs, name of the shown preview
        self._form_text: str | None = None  # the file the form preview planned (written as is on launch)
        self._form_error = ""
        self._sets: dict[str, str] = {}  # the --set field of each file (by option id): overrides belong to one file
        self._parallel_error = False  # the result line shows why the parallel field is refused
        self.launching = False
        self.range_test = None  # (process, log path, file) of the running `mxdash lrfind`

    def compose(self) -> ComposeResult:
        with Vertical(id="launch-left"):
            yield Label("Experiments", classes="section-title")
            yield OptionList(id="launch-files")
        with ContentSwitcher(initial="launch-file", id="launch-right"):
            with VerticalScroll(id="launch-file"):
                yield Static("", id="launch-preview")
                with Horizontal(classes="launch-row"):
                    yield Label("parallel", classes="form-label")
                    yield Input(placeholder="auto", id="launch-parallel", restrict=r"\d*", classes="short",
                                validators=[ParallelRuns()])
                with Horizontal(classes="launch-row"):
                    yield Label("--set", classes="form-label")
                    yield SetItemsInput(placeholder="train.epochs=3 train.batch_size=128", id="launch-set")
                with Horizontal(classes="launch-buttons"):
                    yield Button("Launch (ctrl+l)", id="launch-file-button", variant="primary")
                    yield Button("LR range test (ctrl+t)", id="launch-lrfind-button")
                yield Static("", id="launch-file-result", classes="launch-result")
            with VerticalScroll(id="launch-form"):
                yield from self._compose_form()

    def _compose_form(self) -> ComposeResult:
        files = self.app.experiment_files()

        def row(label: str, widget):
            with Horizontal(classes="launch-row"):
                yield Label(label, classes="form-label")
                yield widget

        yield from row("name", Input(value="dashboard", id="form-name"))
        nets = known_values(files, "net")
        yield from row("net", Input(value="mlp", id="form-net", suggester=SuggestFromList(nets, case_sensitive=False),
                                    placeholder=", ".join(nets)))
        datasets = known_values(files, "data")
        yield from row("dataset", Input(value="digits", id="form-data",
                                        suggester=SuggestFromList(datasets, case_sensitive=False),
                                        placeholder=", ".join(datasets)))
        yield Label("optimizers (space toggles)", classes="form-label wide")
        yield SelectionList[str](*[(name, name, name in ("sgd", "adam")) for name in OPTIMIZER_KEYS],
                                 id="form-optimizers")
        yield from row("lrs", Input(value="", placeholder="comma list; empty: a suited lr per optimizer",
                                    id="form-lrs"))
        yield from row("epochs", Input(value="5", id="form-epochs", restrict=r"\d*"))
        yield from row("device", Input(value="cpu", id="form-device",
                                       suggester=SuggestFromList(["cpu", "gpu", "gpu:0", "auto"])))
        yield from row("parallel", Input(value="", placeholder="auto", id="form-parallel", restrict=r"\d*",
                                                validators=[ParallelRuns()]))
        yield Button("Launch (ctrl+l)", id="launch-form-button", variant="primary")
        yield Static("", id="launch-form-result", classes="launch-result")
        yield Static("", id="launch-form-preview")

    def on_mount(self) -> None:
        self.reload_files()
        self.set_interval(self.RANGE_TEST_CHECK_S, self._check_range_test)

    def show_file(self, path: Path, overrides: list[str] | None = None) -> None:
        """Highlight `path` (listed last if it is not yet) with these `--set` items: its preview plans them."""
        options = self.query_one("#launch-files", OptionList)
        ids = [options.get_option_at_index(i).id for i in range(options.option_count)]
        same = [i for i in ids if i != FORM_OPTION and Path(i).resolve() == Path(path).resolve()]
        if not same:
            options.add_option(Option(Path(path).stem, id=str(path)))
            ids.append(str(path))
        option_id = same[0] if same else str(path)
        self._remember_sets()
        if overrides is not None:
            self._sets[option_id] = overrides_text(overrides)
        options.highlighted = ids.index(option_id)
        self._show_file(Path(option_id))

    def _remember_sets(self) -> None:
        if self.current is not None:
            self._sets[str(self.current)] = self.query_one("#launch-set", Input).value

    def _show_file(self, path: Path) -> None:
        """The right side previews `path` with its own --set items (a sweep `w` planned for lr_sweep must not turn
        the next file chosen into 3 x 12 runs)."""
        self.current = path
        self.query_one(ContentSwitcher).current = "launch-file"
        field = self.query_one("#launch-set", Input)
        text = self._sets.get(str(path), "")
        if field.value != text:
            field.value = text
            field.cursor_position = len(text)
        self.update_file_preview()

    def reload_files(self) -> None:
        self.files = self.app.experiment_files()
        options = self.query_one("#launch-files", OptionList)
        highlighted = options.highlighted
        options.clear_options()
        options.add_option(Option(Text("+ new (form)", style="bold"), id=FORM_OPTION))
        for path in self.files:
            label = f"{path.stem} (launched)" if path.parent.name == "launched" else path.stem
            options.add_option(Option(label, id=str(path)))
        options.highlighted = highlighted if highlighted is not None and highlighted < options.option_count \
            else (1 if self.files else 0)

    # -- preview --------------------------------------------------------------------------------------------------
    @on(OptionList.OptionHighlighted, "#launch-files")
    def _file_highlighted(self, event: OptionList.OptionHighlighted) -> None:
        option_id = event.option.id
        switcher = self.query_one(ContentSwitcher)
        if option_id == FORM_OPTION:
            self._remember_sets()
            self.current = None
            switcher.current = "launch-form"
            self.update_form_preview()
        elif self.current is not None and str(self.current) == option_id:
            switcher.current = "launch-file"
            self.update_file_preview()
        else:
            self._remember_sets()
            self._show_file(Path(option_id))

    @on(OptionList.OptionSelected, "#launch-files")
    def _file_selected(self, event: OptionList.OptionSelected) -> None:
        # enter: on to what one types next (the form's first field, a file's --set items)
        target = "#form-name" if event.option.id == FORM_OPTION else "#launch-set"
        self.query_one(target, Input).focus()

    @on(Input.Changed, "#launch-set")
    def _sets_changed(self) -> None:
        self.update_file_preview()

    @on(Input.Changed, "#launch-parallel")
    def _parallel_changed(self) -> None:
        self.show_parallel_check()

    @on(Input.Changed, "#launch-form Input")
    @on(SelectionList.SelectedChanged)
    def _form_changed(self) -> None:
        self.update_form_preview()

    def update_file_preview(self) -> None:
        preview = self.query_one("#launch-preview", Static)
        if self.current is None:
            return
        try:
            raw = read_experiment_file(self.current)
            overrides = parse_overrides(self.query_one("#launch-set", Input).value, display_path(self.current))
            raw = apply_overrides(raw, overrides, self.current)
            runs = plan_runs(raw, self.current)
            name = experiment_name(raw, self.current)
        except ConfigError as e:
            self._planned = None
            preview.update(Text(str(e), style="red"))
            return
        self._planned = (raw, runs, name)
        preview.update(render_preview(raw, runs, name, display_path(self.current)))
        self.show_parallel_check()

    def form_raw(self) -> tuple[dict, str]:
        """The experiment the form describes (raw TOML dict) and its file name stem. Raises ConfigError."""
        value = lambda wid: self.query_one(wid, Input).value.strip()  # noqa: E731
        name = re.sub(r"[^A-Za-z0-9_-]+", "-", value("#form-name")).strip("-") or "dashboard"
        optimizers = list(self.query_one("#form-optimizers", SelectionList).selected)
        if not optimizers:
            raise ConfigError(None, "optimizers", "select at least one optimizer")
        lrs: list[float] = []
        for part in filter(None, (p.strip() for p in value("#form-lrs").split(","))):
            try:
                lrs.append(float(part))
            except ValueError:
                raise ConfigError(None, "lrs", f"not a number: {part!r}") from None
        epochs = value("#form-epochs")
        raw: dict = {
            "experiment": {"name": name, "description": "launched from the mxdash dashboard"},
            "data": {"name": value("#form-data") or "digits"},
            "net": {"name": value("#form-net") or "mlp"},
            "train": {"epochs": int(epochs) if epochs else 5, "device": value("#form-device") or "cpu"},
        }
        grid: dict = {}
        if lrs:
            raw["optimizer"] = {"name": optimizers[0], "lr": lrs[0]}
            if len(optimizers) > 1:
                grid["optimizer.name"] = optimizers
            if len(lrs) > 1:
                grid["optimizer.lr"] = lrs
        elif len(optimizers) == 1:
            raw["optimizer"] = {"name": optimizers[0], "lr": DEFAULT_LRS.get(optimizers[0], 0.01)}
        else:  # each optimizer with a learning rate that suits it
            grid["optimizer"] = [{"name": o, "lr": DEFAULT_LRS.get(o, 0.01)} for o in optimizers]
        if grid:
            raw["grid"] = grid
        return raw, name

    def update_form_preview(self) -> None:
        preview = self.query_one("#launch-form-preview", Static)
        self._planned = self._form_text = None
        try:
            raw, name = self.form_raw()
            text = form_to_toml(raw)
            self._planned = plan_text(text, self.form_path(name))
            self._form_text = text
        except (ConfigError, ValueError) as e:
            self._form_error = str(e)
            preview.update(Text(self._form_error, style="red"))
            return
        raw, runs, name = self._planned
        preview.update(render_preview(raw, runs, name, f"→ {display_path(self.form_path(name))}"))
        self.show_parallel_check()

    # -- the parallel field: 1..runs, or empty for auto ------------------------------------------------------------
    def parallel_value(self, run_count: int) -> int | None:
        """The parallel field's number (None: auto) for `run_count` runs. Input's validation marks the field
        (-invalid); the result line says why. Raises ValueError."""
        form = self.current is None
        field = self.query_one("#form-parallel" if form else "#launch-parallel", Input)
        box = self.query_one("#launch-form-result" if form else "#launch-file-result", Static)
        field.validators[0].run_count = run_count
        outcome = field.validate(field.value)
        if not outcome.is_valid:
            box.update(Text(outcome.failure_descriptions[0], style="red"))
            box.scroll_visible()  # under a long preview on a small terminal
            self._parallel_error = True
            raise ValueError(outcome.failure_descriptions[0])
        if self._parallel_error:
            box.update("")
            self._parallel_error = False
        return check_parallel(field.value, run_count)

    def show_parallel_check(self) -> None:
        """Check the parallel field against the planned runs as it is typed (nothing planned: the preview says why)."""
        with suppress(ValueError):
            if self._planned is not None:
                self.parallel_value(len(self._planned[1]))

    def form_path(self, name: str) -> Path:
        return self.runs_dir / "launched" / f"{name}.toml"

    def action_focus_files(self) -> None:
        self.query_one("#launch-files", OptionList).focus()

    # -- launching ------------------------------------------------------------------------------------------------
    @on(Button.Pressed, "#launch-file-button, #launch-form-button")
    def _button(self) -> None:
        self.action_launch()

    @on(Button.Pressed, "#launch-lrfind-button")
    def _lrfind_button(self) -> None:
        self.action_lrfind()

    def action_launch(self) -> None:
        if self.launching:
            self.app.notify("A launch is already in progress", severity="warning")
            return
        result_box = "#launch-form-result" if self.current is None else "#launch-file-result"
        result = self.query_one(result_box, Static)
        try:
            if self.current is None:
                self.update_form_preview()  # plan exactly the text that will be written
                if self._form_text is None:
                    raise ValueError(self._form_error)
                path, text = self.form_path(self.form_raw()[1]), self._form_text
                overrides: list[str] = []
                runs = self._planned[1]
            else:
                path, text = self.current, None
                overrides = parse_overrides(self.query_one("#launch-set", Input).value, display_path(path))
                runs = plan_runs(apply_overrides(read_experiment_file(path), overrides, path), path)
            parallel = self.parallel_value(len(runs))
        except (ConfigError, ValueError) as e:
            result.update(Text(str(e), style="red"))
            result.scroll_visible()
            return
        self.launching = True
        result.update(Text(f"launching {display_path(path)} …", style="yellow"))
        self._launch(path, text, parallel, overrides, result_box)

    @work(thread=True, exclusive=True, group="launch", exit_on_error=False)
    def _launch(self, path: Path, text: str | None, parallel: int | None, overrides: list[str],
                result_box: str) -> None:
        if text is not None:  # the form's experiment file, exactly as planned (never half-written)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                partial = path.with_name(path.name + ".tmp")
                partial.write_text(text)
                partial.replace(path)
            except OSError as e:
                result = CommandResult(False, f"cannot write {path}: {e.strerror or e}", returncode=-1)
                self.app.call_from_thread(self._launched, result, result_box)
                return
        result = launch_experiment(path, self.runs_dir, parallel, overrides, runner=self.app.command_runner)
        self.app.call_from_thread(self._launched, result, result_box)

    def _launched(self, result: CommandResult, result_box: str) -> None:
        self.launching = False
        box = self.query_one(result_box, Static)
        if result.ok:
            exp = result.payload.get("experiment", "?")
            runs = result.payload.get("runs", [])
            box.update(Text.assemble(("started ", "green"), (exp, "bold green"),
                                     (f": {len(runs)} runs, detached (they go on if the dashboard closes)", "green")))
            self.action_focus_files()  # digits switch views again (1: Runs)
        else:
            box.update(Text(result.message, style="red"))
        self.reload_files()
        self.post_message(self.Launched(result))

    # -- LR range test (`mxdash lrfind FILE` in its own process) ------------------------------------------------
    def action_lrfind(self) -> None:
        result = self.query_one("#launch-file-result", Static)
        if self.current is None:
            self.app.notify("select an experiment file first: the LR range test runs one test per optimizer of "
                            "its grid", severity="warning")
            return
        if self.range_test is not None:
            self.app.notify("an LR range test is running already", severity="warning")
            return
        path = self.current
        try:
            overrides = parse_overrides(self.query_one("#launch-set", Input).value, display_path(path))
            plan_runs(apply_overrides(read_experiment_file(path), overrides, path), path)
        except ConfigError as e:
            result.update(Text(str(e), style="red"))
            return
        try:
            process, log_path = start_lrfind(path, self.runs_dir, overrides, starter=self.app.process_starter)
        except OSError as e:
            result.update(Text(f"cannot start mxdash lrfind: {e.strerror or e}", style="red"))
            return
        self.range_test = (process, log_path, path)
        self.app.notify(f"LR range test of {path.name} started: its runs show in Runs as they train; 3 (LR effects) "
                        "draws them", title="LR range test", timeout=6)
        result.update(Text(f"LR range test of {display_path(path)} running (one test per optimizer; the runs show "
                           f"as they train) · log {display_path(log_path)}", style="yellow"))

    def _check_range_test(self) -> None:
        if self.range_test is None:
            return
        process, log_path, path = self.range_test
        if process.poll() is None:
            return
        self.range_test = None
        outcome = lrfind_result(log_path)
        box = self.query_one("#launch-file-result", Static)
        if outcome.ok:
            found = [f"{t['optimizer']} {t['suggestion']['lr']:.3g}" for t in outcome.payload["tests"]
                     if (t.get("suggestion") or {}).get("lr") is not None]
            box.update(Text("LR range test done: " + (", ".join(found) or "no suggestion") +
                            " · 3: LR effects (w there: sweep around them)", style="green"))
        else:
            box.update(Text(outcome.message, style="red"))
        self.post_message(self.RangeTestDone(outcome, path))
