"""Rich renderables for the lessons of issue 11, used by `mxdash show`, `compare`, `ls` and `lrfind`: the LR range
test's result and curve, the confusion matrix as a heat table with per-class precision / recall / F1, the decision
boundary of a 2-D run as a coloured half-block map with training points, the detected events, the weights count.

Reads only the run store (artifact payloads: experiments/metrics.py); imports no mxnet or textual, so the dashboard
can draw the same renderables.
"""
from __future__ import annotations

import math

from rich.console import Group
from rich.table import Table
from rich.text import Text

from experiments.annotations import annotations_for_run
from experiments.metrics import (ARTIFACT_BOUNDARY, ARTIFACT_BOUNDARY_POINTS, ARTIFACT_CONFUSION,
                                 ARTIFACT_LR_SUGGESTION, LR, LRFIND_KIND, SMOOTHED_LOSS)
from experiments.report import (BEST_STYLE, MISSING, SPARK_WIDTH, differing_config, flat_config, format_value,
                                sparkline, status_text)


def show_sections(store, run: dict, width: int = 120) -> list:
    """What `mxdash show` adds for a run: its events, and the LR range test result, the latest confusion matrix and
    the latest decision boundary where the run has them."""
    parts = []
    events = _show_events(annotations_for_run(store, run))
    if events is not None:
        parts.append(events)
    if run.get("kind") == LRFIND_KIND:
        found = store.latest_artifact(run["id"], ARTIFACT_LR_SUGGESTION)
        parts.append(_show_lrfind(store, run, found["payload"] if found else None, width))
    confusion = store.latest_artifact(run["id"], ARTIFACT_CONFUSION)
    if confusion is not None:
        parts.append(render_confusion(confusion["payload"], confusion["epoch"], width))
    boundary = store.latest_artifact(run["id"], ARTIFACT_BOUNDARY)
    if boundary is not None:
        points = store.latest_artifact(run["id"], ARTIFACT_BOUNDARY_POINTS)
        parts.append(Text(f"decision boundary (step {boundary['step']}): background = predicted class, brighter = "
                          "surer; dots = training points", style="bold"))
        parts.append(render_boundary(boundary["payload"], points["payload"] if points else None, width))
    return parts


# -- weights count ---------------------------------------------------------------------------------------------------
def total_params(run: dict) -> int | None:
    """The net's parameter count from the run's summary (recorded when training starts), or None before that."""
    summary = run.get("summary") or {}
    value = summary.get("total_params") if isinstance(summary, dict) else None
    return value if isinstance(value, int) else None


def format_params(run: dict) -> str:
    value = total_params(run)
    return MISSING if value is None else f"{value:,}"


# -- events (experiments/annotations.py) -----------------------------------------------------------------------------
def _show_events(events: list) -> Group | None:
    if not events:
        return None
    lines = [Text.assemble(("• ", "dim"), (event.text, EVENT_STYLES.get(event.kind, ""))) for event in events]
    return Group(Text("events", style="bold"), *lines)


EVENT_STYLES = {"diverged": "dark_orange", "dead_relu": "magenta", "overfitting": "yellow", "best_lr": "green"}


# -- LR range test ---------------------------------------------------------------------------------------------------
def _show_lrfind(store, run: dict, found: dict | None, width: int = 120) -> Group:
    from experiments.lrfind import RULES

    title = Text("LR range test", style="bold")
    if found is None:
        return Group(title, Text("no result yet", style="dim"))
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="dim", no_wrap=True)
    grid.add_column()
    suggested = (Text(f"{found['lr']:.3g}", style=BEST_STYLE) if found.get("lr") is not None
                 else Text(f"none: {found.get('reason', '')}", style="yellow"))
    grid.add_row("suggested lr", Text.assemble(suggested, (f"  ({found['rule']}: {RULES.get(found['rule'], '')})",
                                                           "dim")))
    if found.get("min_loss_lr") is not None:
        grid.add_row("lowest smoothed loss", f"{found['min_loss']:.4f} at lr {found['min_loss_lr']:.3g}")
    if found.get("steep_lr") is not None:
        grid.add_row("steepest descent", f"at lr {found['steep_lr']:.3g}")
    grid.add_row("range", f"lr {found['low']:.3g} to {found['high']:.3g} in {found['steps']} steps")
    grid.add_row("end", f"step {found['steps_run']}, lr {found['stop_lr']:.3g}: smoothed loss > "
                        f"{found['stop_factor']:g}x its best" if found.get("stopped_early") else
                        f"all {found['steps']} steps run")
    rows = store.metrics_since(run["id"], keys=[LR, SMOOTHED_LOSS])
    lrs = [row[5] for row in rows if row[4] == LR]
    smoothed = [row[5] for row in rows if row[4] == SMOOTHED_LOSS]
    curve_width = max(10, min(SPARK_WIDTH, width - 22 - 2 - 16))
    grid.add_row("smoothed loss", Text.assemble(f"{found['low']:.0e} ", lr_curve(lrs, smoothed, found.get("lr"),
                                                                                   curve_width),
                                                 f" {found['stop_lr']:.2g}"))
    return Group(title, grid)


def render_lrfind(store, runs: list[dict], width: int = 80) -> Table:
    """`mxdash lrfind`'s result: one row per range test, its suggestion, and its smoothed loss against log LR from
    the first LR to where the test ended, with the suggestion's place in green."""
    labels = _lrfind_labels(runs)
    table = Table(title="LR range test: smoothed loss against log LR", title_justify="left", box=None, padding=(0, 1))
    for column, justify in (("run", "left"), ("", "left"), ("suggested", "right"), ("from", "right"),
                            ("curve", "left"), ("to", "left")):
        table.add_column(column, justify=justify, no_wrap=True)
    id_width = max([len(run["id"]) for run in runs] + [3])
    label_width = max([len(label) for label in labels] + [1])
    # every other column at its widest ("suggested", "1e-07", "0.0012"), 2 cells of padding per column
    curve_width = max(10, min(SPARK_WIDTH, width - id_width - label_width - 9 - 5 - 6 - 2 * 6 - 1))
    for run, label in zip(runs, labels):
        found = store.latest_artifact(run["id"], ARTIFACT_LR_SUGGESTION)
        if found is None:
            table.add_row(run["id"], label, status_text(run.get("status")), "", "", "")
            continue
        found = found["payload"]
        rows = store.metrics_since(run["id"], keys=[LR, SMOOTHED_LOSS])
        lrs = [row[5] for row in rows if row[4] == LR]
        smoothed = [row[5] for row in rows if row[4] == SMOOTHED_LOSS]
        suggested = (Text(f"{found['lr']:.3g}", style=BEST_STYLE) if found["lr"] is not None
                     else Text("none", style="yellow"))
        table.add_row(run["id"], label, suggested, f"{found['low']:.0e}", lr_curve(lrs, smoothed, found["lr"],
                                                                                      curve_width),
                      f"{found['stop_lr']:.2g}")
    return table


def lr_curve(lrs: list, smoothed: list, marked_lr: float | None, width: int) -> Text:
    """A sparkline of the smoothed loss (one value per step, so its x axis is log LR), clipped at 1.1x its first
    value so the dip shows under a blow-up, with the cell of `marked_lr` in green."""
    finite = [v for v in smoothed if v is not None and math.isfinite(v)]
    cap = finite[0] * 1.1 if finite else None
    # sampled, not bucket-averaged: the curve is smooth already, and a mean would fold the blow-up into its cell
    sampled = [smoothed[i * (len(smoothed) - 1) // max(width - 1, 1)] for i in range(width)] if smoothed else []
    clipped = [min(v, cap) if v is not None and math.isfinite(v) and cap is not None else v for v in sampled]
    line = Text(sparkline(clipped, width))
    if marked_lr is not None and lrs:
        nearest = min(range(len(lrs)), key=lambda i: abs(math.log(lrs[i]) - math.log(marked_lr)))
        cell = min(width - 1, nearest * width // len(lrs))
        line.stylize("bold green reverse", cell, cell + 1)
    return line


def _lrfind_labels(runs: list[dict]) -> list[str]:
    """What tells the range tests apart: the optimizer, plus any other differing config (the grid's other axes)."""
    differing = [key for key, _ in differing_config(runs)
                 if key.startswith(("optimizer.name", "net.", "data.", "train.")) and key != "optimizer.lr"]
    labels = []
    for run in runs:
        flat = flat_config(run.get("config") or {})
        parts = [str(run.get("optimizer") or "")]
        parts += [f"{key.split('.', 1)[1]}={format_value(flat.get(key, MISSING))}" for key in differing
                  if key != "optimizer.name"]
        labels.append(" ".join(parts))
    return labels


# -- confusion matrix ------------------------------------------------------------------------------------------------
MAX_MATRIX_CLASSES = 20  # wider matrices do not fit a terminal: the per-class table lists the worst classes instead
HIT_STYLES = ["", "on rgb(20,60,30)", "on rgb(25,90,40)", "on rgb(30,120,50)", "on rgb(35,150,60)"]
MISS_STYLES = ["", "on rgb(90,30,30)", "on rgb(130,35,35)", "on rgb(170,40,40)", "on rgb(210,45,45)"]


def heat_style(fraction: float, diagonal: bool) -> str:
    """Background of a matrix cell by its share of the true class's samples: green ramp on the diagonal (hits),
    red ramp off it (confusions); empty cells stay plain."""
    styles = HIT_STYLES if diagonal else MISS_STYLES
    if fraction <= 0:
        return "dim"
    # off-diagonal shares are small: 2% of a class already deserves colour, 25%+ is the brightest
    scale = 1.0 if diagonal else 0.25
    return styles[1 + min(len(styles) - 2, int(fraction / scale * (len(styles) - 1)))]


def render_confusion(scores: dict, epoch: float | None = None, width: int = 120) -> Group:
    """The latest validation's confusion matrix as a heat table (rows: true class, columns: predicted) and
    precision / recall / F1 / support per class, side by side when the width allows."""
    classes, matrix = scores["classes"], scores["matrix"]
    title = f"confusion matrix{f' (epoch {epoch:g})' if epoch is not None else ''}: rows true, columns predicted"
    per_class = _per_class_table(scores)
    if classes > MAX_MATRIX_CLASSES:
        return Group(Text(title.split(":")[0] + f": {classes} classes, too many to draw", style="bold"), per_class)
    cell_width = max(len(str(value)) for row in matrix for value in row) + 1
    heat = Table(box=None, padding=(0, 0), show_edge=False, pad_edge=False)
    heat.add_column("", justify="right", style="dim", no_wrap=True)
    for c in range(classes):
        heat.add_column(Text(str(c), style="dim"), justify="right", min_width=cell_width, no_wrap=True)
    for t, row in enumerate(matrix):
        total = sum(row) or 1
        cells = [Text(str(v).rjust(cell_width), style=heat_style(v / total, t == p)) for p, v in enumerate(row)]
        heat.add_row(f"{t} ", *cells)
    macro = sum(scores["f1"]) / classes
    summary = Text.assemble(("macro F1 ", "dim"), (f"{macro:.4f}", "bold"), ("   most confused: ", "dim"),
                            _most_confused(matrix))
    side_by_side = width >= 2 + (cell_width * classes + 3) + 4 + 46
    body = Table.grid(padding=(0, 4)) if side_by_side else None
    if body is not None:
        body.add_row(heat, per_class)
        return Group(Text(title, style="bold"), body, summary)
    return Group(Text(title, style="bold"), heat, summary, per_class)


def _most_confused(matrix: list[list[int]], count: int = 3) -> str:
    pairs = sorted(((v, t, p) for t, row in enumerate(matrix) for p, v in enumerate(row) if t != p and v > 0),
                   reverse=True)[:count]
    return ", ".join(f"{t} as {p} ({v})" for v, t, p in pairs) or "none"


def _per_class_table(scores: dict, worst: int = 10) -> Table:
    classes = scores["classes"]
    order = list(range(classes))
    if classes > MAX_MATRIX_CLASSES:  # only the worst classes by F1
        order = sorted(order, key=lambda c: scores["f1"][c])[:worst]
    table = Table(box=None, padding=(0, 1), show_edge=False, pad_edge=False)
    for column in ("class", "precision", "recall", "F1", "support"):
        table.add_column(column, justify="right", no_wrap=True)
    worst_f1 = min(scores["f1"]) if classes > 1 else None
    for c in order:
        style = "yellow" if worst_f1 is not None and scores["f1"][c] == worst_f1 else ""
        table.add_row(str(c), f"{scores['precision'][c]:.3f}", f"{scores['recall'][c]:.3f}",
                      Text(f"{scores['f1'][c]:.3f}", style=style), str(scores["support"][c]))
    return table


# -- decision boundary -----------------------------------------------------------------------------------------------
CLASS_COLOURS = [(240, 130, 40), (50, 120, 230), (70, 190, 90), (210, 70, 170), (230, 210, 60), (60, 200, 210),
                 (150, 90, 220), (200, 60, 60), (140, 140, 140), (120, 170, 50)]
MAX_OVERLAY_POINTS = 300


def _shade(colour: tuple, confidence: float, classes: int) -> str:
    """The class colour, darker where the net is unsure (confidence at chance level -> 30% brightness)."""
    chance = 1 / max(classes, 2)
    sureness = min(1.0, max(0.0, (confidence - chance) / (1 - chance)))
    factor = 0.3 + 0.7 * sureness
    return "rgb({},{},{})".format(*(int(c * factor) for c in colour))


def render_boundary(payload: dict, points: dict | None = None, width: int = 120, columns: int | None = None) -> Text:
    """The boundary payload as half blocks (each character: two grid rows, upper half in the foreground colour), at
    most `columns` (default: the grid's width, or what the terminal allows) characters wide, resampled by nearest
    cell. Training points (up to 300) are drawn as dots in their true class's colour."""
    pred, confidence, classes = payload["pred"], payload["confidence"], payload["classes"]
    grid_h, grid_w = len(pred), len(pred[0])
    cols = max(8, min(columns or grid_w, width - 1))
    rows = max(2, round(grid_h * cols / grid_w / 2) * 2)  # character cells are about twice as tall as wide

    def cell(r: int, c: int) -> str:
        gr, gc = min(grid_h - 1, r * grid_h // rows), min(grid_w - 1, c * grid_w // cols)
        return _shade(CLASS_COLOURS[pred[gr][gc] % len(CLASS_COLOURS)], confidence[gr][gc] / 100, classes)

    dots: dict[tuple[int, int], int] = {}
    if points:
        (x_lo, x_hi), (y_lo, y_hi) = payload["x"], payload["y"]
        step = max(1, len(points["points"]) // MAX_OVERLAY_POINTS)
        for (x, y), label in list(zip(points["points"], points["labels"]))[::step]:
            c = int((x - x_lo) / (x_hi - x_lo) * cols)
            r = int((y_hi - y) / (y_hi - y_lo) * rows) // 2
            if 0 <= c < cols and 0 <= r < rows // 2:
                dots[(r, c)] = label
    text = Text()
    for line in range(rows // 2):
        for c in range(cols):
            top, bottom = cell(2 * line, c), cell(2 * line + 1, c)
            if (line, c) in dots:
                # half-way to white, so a point stands out on its own class's background too
                tint = ((v + 255) // 2 for v in CLASS_COLOURS[dots[(line, c)] % len(CLASS_COLOURS)])
                colour = "rgb({},{},{})".format(*tint)
                text.append("●", style=f"bold {colour} on {bottom}")
            else:
                text.append("▀", style=f"{top} on {bottom}")
        text.append("\n")
    text.rstrip()
    return text
