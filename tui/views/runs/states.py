"""What the Runs view shows instead of the table: the store being read, no store yet (how to start one), or a store
that cannot be read (its own error message, and no command that would fail the same way)."""
from __future__ import annotations

from rich.text import Text

LOADING, EMPTY, MISSING, BROKEN, READY = "loading", "empty", "missing", "broken", "ready"


def state_text(state: str, message: str | None, runs_dir: str) -> Text:
    text = Text()
    if state == LOADING:
        text.append("Reading the store…", style="bold")
        text.append(f"\n{runs_dir}", style="dim")
    elif state == BROKEN:
        text.append("Cannot read the store", style="bold red")
        text.append(f"\n{message or runs_dir}", style="red")
        text.append("\n\nNothing was changed. Fix or move that file, or open another runs directory "
                    "(--runs-dir).", style="dim")
    else:
        text.append("No runs yet", style="bold")
        if message and state == MISSING:
            text.append(f"\n{message}", style="dim")
        text.append("\n\nPress ")
        text.append("6", style="bold reverse")
        text.append(" (Launch) to start an experiment from experiments/*.toml or the form,\nor from a shell:\n\n")
        text.append(f"  mxdash run experiments/optimizers.toml --runs-dir {runs_dir}\n", style="bold")
        text.append("\nRuns appear here live as they are created.", style="dim")
    return text


def info_text(shown: int, total: int, selected: int, sort_label: str | None, reverse: bool, filter_text: str,
              common: str = "") -> Text:
    """The status line under the table: `14 of 36 runs  2 selected  opt adam · lr 0.01 for all  sorted
    by age ▲  filter: exp:lr_sweep` (`common`: the values the table leaves out because every shown run has them)."""
    text = Text()
    text.append(f"{shown} of {total} runs" if shown != total else f"{total} runs", style="bold")
    if selected:
        text.append(f"  {selected} selected", style="bold yellow")
    if common:  # before the sort and filter: at 80 columns the line is cut at the end
        text.append(f"  {common}")
    if sort_label is not None:
        text.append(f"  sorted by {sort_label} {'▼' if reverse else '▲'}", style="dim")
    if filter_text:
        text.append(f"  filter: {filter_text}", style="italic")
    return text
