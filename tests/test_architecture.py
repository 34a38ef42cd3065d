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


def modules_imported(path: Path) -> set[str]:
    """Every module `path` imports, anywhere in it (a function's lazy import too), as a full dotted name:
    relative imports are resolved against the file's own package; `from a import b` gives a.b as well as a
    (b may be a submodule)."""
    rel = path.relative_to(ROOT).with_suffix("")
    package = list(rel.parts[:-1]) if rel.name != "__init__" else list(rel.parts[:-1])
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            mod = ".".join(base + ([node.module] if node.module else []))
            out.add(mod)
            out |= {f"{mod}.{a.name}" for a in node.names}
    return out


def _under(mods: set[str], prefix: str) -> set[str]:
    return {m for m in mods if m == prefix or m.startswith(prefix + ".")}


@pytest.mark.parametrize("path", files("playground", "tabs"), ids=lambda p: p.name)
def test_tabs_use_the_models_only_through_the_package(path):
    """A tab reads the registry's public names (models.REGISTRY, family_keys, ...), never a model module:
    what a family's model does reaches a tab through the session and its Snapshot."""
    mods = modules_imported(path)
    inside = {m for m in _under(mods, "models") if m.count(".") and m.split(".")[1] in _model_modules()}
    assert not inside, f"{path.name} imports {sorted(inside)}"
    assert not _under(mods, "torch"), path


def _model_modules() -> set[str]:
    return {p.stem for p in (ROOT / "models").glob("*.py") if p.stem != "__init__"} | {
        p.name for p in (ROOT / "models").iterdir() if p.is_dir() and (p / "__init__.py").exists()}


def test_the_data_layer_never_imports_the_models():
    """Datasets are numpy: the known densities they share with the models live in playground/densities.py."""
    for name in ("datasets.py", "densities.py"):
        mods = modules_imported(ROOT / "playground" / name)
        assert not _under(mods, "models"), f"{name}: {sorted(_under(mods, 'models'))}"
        assert not (_under(mods, "gradio") | _under(mods, "plotly")), name


@pytest.mark.parametrize("path", files("playground", "session"), ids=lambda p: p.name)
def test_the_session_never_reaches_the_ui(path):
    """The training side draws nothing: no gradio, no plotly, no view, no tab (Snapshots cross to them)."""
    mods = modules_imported(path)
    for room in ("gradio", "plotly", "playground.views", "playground.tabs", "playground.plots", "playground.tabkit"):
        assert not _under(mods, room), f"{path.name} imports {room}"


def test_the_import_walk_sees_relative_and_lazy_imports(tmp_path):
    """The walk above must see what the rules forbid, or they hold nothing."""
    mods = modules_imported(ROOT / "playground" / "session" / "run.py")
    assert {"playground.metrics", "playground.session.checkpoints", "models", "torch"} <= mods
    assert "models.base" in modules_imported(ROOT / "playground" / "bench.py")  # a lazy import in a function
