"""The rooms of ../shared/ARCHITECTURE.md, held by walking every import."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module.split(".")[0])
    return out


def files(*parts):
    return sorted((ROOT.joinpath(*parts)).rglob("*.py"))


@pytest.mark.parametrize("path", files("models"), ids=lambda p: p.name)
def test_models_never_import_ui(path):
    assert not imports(path) & {"gradio", "plotly", "playground"}, path


DRAWING_SIDE = ["plots.py", "snapshot.py", "frames.py", "channel.py"]  # views, frames and the page's requests


@pytest.mark.parametrize("path", [ROOT / "playground" / f for f in DRAWING_SIDE] + files("playground", "views"),
                         ids=lambda p: p.name)
def test_plots_never_import_torch_or_gradio(path):
    assert not imports(path) & {"torch", "gradio", "models"}, path


def test_snapshot_imports_only_the_standard_library_and_numpy():
    """The model -> view contract is numpy only: the worker side reads it without the plotting stack."""
    assert imports(ROOT / "playground" / "snapshot.py") - set(sys.stdlib_module_names) <= {"numpy"}


def test_drawing_side_loads_without_torch_or_gradio():
    """The same rule at run time: importing the views, the snapshot and the plots pulls in neither
    (an indirect import through a package __init__ would pass the walk above)."""
    code = ("import playground.views, playground.snapshot, playground.plots, playground.frames, "
            "playground.channel, sys; "
            "assert 'torch' not in sys.modules and 'gradio' not in sys.modules, "
            "[m for m in ('torch', 'gradio') if m in sys.modules]")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


@pytest.mark.parametrize("path", files("playground", "tabs"), ids=lambda p: p.name)
def test_tabs_hold_no_model_code(path):
    assert "torch" not in imports(path), path


def test_no_module_level_mutable_session_state():
    """Visitors' runs live in gr.State; a module-level Session would be shared by everyone."""
    for path in files("playground"):
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Call):
                fn = node.value.func
                name = getattr(fn, "id", getattr(fn, "attr", ""))
                assert name not in ("Session", "TabState"), f"{path}: module-level {name}"
