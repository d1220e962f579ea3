"""How the dashboard shows a run's status: the stored one, or the derived `stale` (experiments.metrics
`display_status`: running, but the training loop has not advanced for a while), each in its own colour."""
from __future__ import annotations

from rich.text import Text

from experiments.metrics import STALE
from experiments.report import MISSING, status_style as stored_status_style

STALE_STYLE = "bold black on yellow"  # distinct from every stored status (running is cyan, diverged orange)


def status_style(status: str | None) -> str:
    return STALE_STYLE if status == STALE else stored_status_style(status)


def status_text(status: str | None) -> Text:
    return Text(status or MISSING, style=status_style(status))
