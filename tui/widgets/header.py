"""The one-line top bar: app name, runs directory, live run counts, and the machine status in the right corner."""
from __future__ import annotations

from collections import Counter

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal
from textual.widgets import Static

from experiments.metrics import DIVERGED, FAILED, LOST, QUEUED, RUNNING, STALE
from tui.machine import MachineStatus
from tui.status import status_style
from tui.widgets.live_text import LiveText

GIB = 1024 ** 3


def format_bytes(n: float) -> str:
    if n >= GIB:
        return f"{n / GIB:.1f}G"
    return f"{n / 1024 ** 2:.0f}M"


def usage_style(percent: float) -> str:
    return "red" if percent >= 90 else "yellow" if percent >= 70 else "green"


def machine_text(status: MachineStatus | None, compact: bool = False) -> Text:
    """`CPU 45% mem 3.2/24G  GPU0 80% 5.1/16G` (compact drops the memory totals)."""
    if status is None:
        return Text("CPU –  mem –", style="dim")
    text = Text()
    text.append("CPU ", style="dim")
    text.append(f"{status.cpu:3.0f}%", style=usage_style(status.cpu))
    mem_pct = 100 * status.mem_used / status.mem_total if status.mem_total else 0.0
    text.append(" mem ", style="dim")
    if compact:
        text.append(f"{mem_pct:.0f}%", style=usage_style(mem_pct))
    else:
        text.append(f"{format_bytes(status.mem_used)}/{format_bytes(status.mem_total)}", style=usage_style(mem_pct))
    for gpu in status.gpus:
        gpu_mem = 100 * gpu.mem_used / gpu.mem_total if gpu.mem_total else 0.0
        text.append(f"  GPU{gpu.index} ", style="dim")
        text.append(f"{gpu.util:.0f}%", style=usage_style(gpu.util))
        if compact:
            text.append(f" {gpu_mem:.0f}%", style=usage_style(gpu_mem))
        else:
            text.append(f" {format_bytes(gpu.mem_used)}/{format_bytes(gpu.mem_total)}", style=usage_style(gpu_mem))
    return text


def counts_text(statuses: Counter, total: int) -> Text:
    text = Text(f"{total} run{'s' if total != 1 else ''}", style="bold")
    for status in (RUNNING, STALE, QUEUED, FAILED, DIVERGED, LOST):
        if statuses.get(status):
            text.append("  ")
            text.append(f"{statuses[status]} {status}", style=status_style(status))
    return text


class MachineStatusWidget(LiveText):
    """CPU / memory / GPU use, refreshed by the app's machine worker."""

    DEFAULT_CLASSES = "machine-status"

    def __init__(self, **kwargs) -> None:
        super().__init__(machine_text(None), **kwargs)
        self.status: MachineStatus | None = None

    def show(self, status: MachineStatus) -> None:
        self.status = status
        self.show_text(machine_text(status, compact=self.app.size.width < 110 or len(status.gpus) > 1))

    def on_resize(self) -> None:
        if self.status is not None:
            self.show(self.status)


class TopBar(Horizontal):
    """`mxdash  runs/  12 runs 4 running  ● live      CPU 12% mem 3.1/23G`."""

    def __init__(self, runs_dir: str, **kwargs) -> None:
        super().__init__(**kwargs)
        self.runs_dir = runs_dir

    def compose(self) -> ComposeResult:
        yield Static(Text.assemble(("mxdash", "bold"), "  ", (self.runs_dir, "dim")), id="topbar-title")
        yield LiveText("", id="topbar-counts")
        yield LiveText("", id="topbar-live")
        yield MachineStatusWidget(id="machine-status")

    def show_counts(self, statuses: Counter, total: int) -> None:
        self.query_one("#topbar-counts", LiveText).show_text(counts_text(statuses, total))

    def show_live(self, text: Text | str) -> None:
        self.query_one("#topbar-live", LiveText).show_text(text)
