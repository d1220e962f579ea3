"""The dashboard must never import mxnet or gluonnlp (startup time, and it runs where MXNet may not even import)."""
from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = ("mxnet", "gluonnlp", "experiments.train", "experiments.worker", "experiments.data", "nets")


def test_importing_the_app_loads_no_mxnet():
    code = ("import sys, json; import tui.app, tui.commands, tui.views.curves, tui.views.lr_effects, "
            "tui.views.dead_relu, tui.views.compare, tui.views.launch, tui.views.boundary; "
            "print(json.dumps(sorted(m for m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
    modules = set(json.loads(out.stdout))
    for name in FORBIDDEN:
        assert name not in modules, f"importing tui.app imported {name}"
    assert not any(m.startswith(("mxnet.", "gluonnlp.")) for m in modules)


def test_building_the_app_loads_no_mxnet(tmp_path):
    """Constructing and composing the app (not only importing it) stays mxnet-free."""
    code = (
        "import asyncio, sys, json\n"
        "from tui.app import MxdashApp\n"
        "async def main():\n"
        f"    app = MxdashApp({str(tmp_path / 'runs')!r}, machine_probe=False)\n"
        "    async with app.run_test(size=(80, 24)) as pilot:\n"
        "        for key in '2345671':\n"
        "            await pilot.press(key)\n"
        "        await pilot.pause()\n"
        "asyncio.run(main())\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    modules = set(json.loads(out.stdout.strip().splitlines()[-1]))
    for name in FORBIDDEN:
        assert name not in modules, f"running the app imported {name}"


def test_tui_sources_import_no_mxnet():
    """Static check over every module under tui/: no import of mxnet, gluonnlp, nets or the engine modules that
    import them (only experiments.store, .report, .config, .devices, .metrics and the pure-Python lesson modules
    .annotations, .lesson_views, .lrfind are allowed)."""
    allowed_experiments = {"experiments.store", "experiments.report", "experiments.config", "experiments.devices",
                           "experiments.metrics", "experiments.annotations", "experiments.lesson_views",
                           "experiments.lrfind"}
    offenders = []
    for path in sorted((ROOT / "tui").rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for name in names:
                root = name.split(".")[0]
                if root in ("mxnet", "gluonnlp", "nets") or (
                        root == "experiments" and name != "experiments" and name not in allowed_experiments):
                    offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}: {name}")
        assert "import mxnet" not in path.read_text(), path
    assert not offenders, "tui must not import mxnet (directly or via the engine):\n" + "\n".join(offenders)


# Private Textual attributes used by the dashboard's hacks (tui/_textual_hacks.py): nowhere else may touch them.
PRIVATE_TEXTUAL = re.compile(r"textual\._|_Static__|_render_cache|_dirty_regions|_row_locations|_column_locations|"
                             r"_row_render_cache|_cell_render_cache|_line_cache|_update_count|_bindings_ready|"
                             r"_RenderCache|_pseudo_class_state|_get_row_renderables|\._data\b|_clear_caches")


def test_private_textual_attributes_live_in_one_module():
    offenders = []
    for path in sorted((ROOT / "tui").rglob("*.py")):
        if path.name == "_textual_hacks.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), start=1):
            if PRIVATE_TEXTUAL.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, "private Textual access outside tui/_textual_hacks.py:\n" + "\n".join(offenders)


def test_textual_is_pinned_to_the_tested_version():
    import textual

    pyproject = (ROOT / "pyproject.toml").read_text()
    assert f'"textual=={textual.__version__}"' in pyproject


LONG_WITH_A_REASON = {
    "tui/views/runs/view.py": "the live table in one place: chunked fill, cell updates, re-sorts, cursor following",
    "tui/app.py": "the message hub: every view posts up to it",
}


def test_no_module_is_long_without_a_reason():
    """One module per view and small modules (issue 7): ~400 lines, a little more where the reason is written."""
    long = {name: n for p in (ROOT / "tui").rglob("*.py") if p.name != "_textual_hacks.py"
            and (n := len(p.read_text().splitlines())) > (500 if (name := str(p.relative_to(ROOT)))
                                                            in LONG_WITH_A_REASON else 420)}
    assert not long, long
