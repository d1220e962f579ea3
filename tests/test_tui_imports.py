"""The dashboard must never import mxnet or gluonnlp (startup time, and it runs where MXNet may not even import)."""
from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FORBIDDEN = ("mxnet", "gluonnlp", "experiments.train", "experiments.worker", "experiments.data", "nets")


def test_importing_the_app_loads_no_mxnet():
    code = ("import sys, json; import tui.app, tui.panes, tui.commands; "
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
        "        for key in '234561':\n"
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
    import them (only experiments.store, .report, .config, .devices are allowed)."""
    allowed_experiments = {"experiments.store", "experiments.report", "experiments.config", "experiments.devices"}
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
