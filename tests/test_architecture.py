"""The layering of docs/ARCHITECTURE.md, held by the imports each module makes: the four top-level
layers, and the order of the layers inside core."""
from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FORBIDDEN = {
    "core": {"ray", "ray_jobs", "dashboards", "panel", "ablations", "dermablate"},
    "ray_jobs": {"ablations", "dashboards", "dermablate"},
    "dashboards": {"ray", "ray_jobs", "dermablate"},
}
# The layers inside core, lowest first (docs/ARCHITECTURE.md): a module imports modules of its own
# layer or below. Each entry is a module or a folder ("/") under core/; the longest match names
# a module's layer, so core/data/__main__.py is a command line although core/data/ is the data layer.
CORE_LAYERS = (
    ("foundation", ("__init__", "labels", "choices", "config", "arms", "io", "log", "devices", "results",
                    "checkpoints", "tracking")),
    ("data", ("data/", "matching")),
    ("evaluation", ("evaluation/",)),
    ("model", ("model", "losses", "optim", "sampling", "gradcam", "ood")),
    ("inference", ("inference",)),
    ("training", ("training", "cvae/", "duplicates", "explain", "export")),
    ("commands", ("train", "predict", "evaluate", "data/__main__", "cvae/__main__")),
)


def imported_modules(path: Path) -> set[str]:
    """Every module a module imports, wherever in the module the import stands."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def imported_packages(path: Path) -> set[str]:
    """The top-level package of every import in a module."""
    return {name.split(".")[0] for name in imported_modules(path)}


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_a_layer_never_imports_the_layers_above_it(layer):
    offenders = {str(path.relative_to(REPO)): sorted(imported_packages(path) & FORBIDDEN[layer])
                 for path in (REPO / layer).rglob("*.py")}
    assert {path: names for path, names in offenders.items() if names} == {}


def test_the_scanner_sees_imports_inside_functions(tmp_path):
    module = tmp_path / "m.py"
    module.write_text("def f():\n    import ray.tune\n    from panel import widgets\n")
    assert imported_packages(module) == {"ray", "panel"}


def test_importing_the_config_imports_no_torch():
    code = "import sys, core.config; print(sorted(m for m in ('torch', 'timm', 'numpy') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_training_hands_predictions_to_the_evaluation_package_entry():
    evaluation = {name for name in imported_modules(REPO / "core" / "training.py")
                  if name.startswith("core.evaluation")}
    assert evaluation == {"core.evaluation"}


def test_evaluating_predictions_imports_no_torch():
    code = ("import sys, core.evaluation.metrics, core.evaluation.compare, core.evaluation.ensemble, "
            "core.evaluation.external, core.evaluation.model_card; "
            "print(sorted(m for m in ('torch', 'timm') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def core_layer(module: str) -> int:
    """The rank in CORE_LAYERS of a core module given as its path under core/ without .py."""
    matches = [(len(entry), rank) for rank, (_, entries) in enumerate(CORE_LAYERS) for entry in entries
               if module == entry or (entry.endswith("/") and module.startswith(entry))]
    if not matches:
        raise LookupError(f"core/{module}.py is in no layer of CORE_LAYERS: add it to docs/ARCHITECTURE.md and here")
    return max(matches)[1]


def module_of(name: str, root: Path) -> str | None:
    """`core.data.split` -> "data/split"; a package -> its __init__; None outside core."""
    parts = name.split(".")
    if parts[0] != "core":
        return None
    path = "/".join(parts[1:])
    if not path:
        return "__init__"
    return f"{path}/__init__" if (root / path).is_dir() else path


def upward_imports(root: Path) -> dict[str, list[str]]:
    """Every core module under `root` (a core/ folder) that imports a module of a higher core layer."""
    found = {}
    for path in sorted(root.rglob("*.py")):
        module = path.relative_to(root).with_suffix("").as_posix()
        layer = core_layer(module)
        above = sorted(name for name in imported_modules(path)
                       if (target := module_of(name, root)) is not None and core_layer(target) > layer)
        if above:
            found[module] = above
    return found


def test_every_core_import_runs_down_the_layers_of_core():
    assert upward_imports(REPO / "core") == {}


def test_an_upward_import_inside_core_is_refused(tmp_path):
    copy = tmp_path / "core"
    shutil.copytree(REPO / "core", copy, ignore=shutil.ignore_patterns("__pycache__"))
    split = copy / "data" / "split.py"
    split.write_text(split.read_text() + "\n\ndef late():\n    from core.training import fit\n    return fit\n")
    (copy / "evaluation" / "metrics.py").write_text("import core.inference\n")
    assert upward_imports(copy) == {"data/split": ["core.training"], "evaluation/metrics": ["core.inference"]}


def test_a_module_outside_the_layers_is_named():
    with pytest.raises(LookupError, match="core/newstage.py is in no layer"):
        core_layer("newstage")


COMMANDS = ["core.train", "core.predict", "core.explain", "core.export", "core.evaluate", "core.evaluation.compare",
            "core.evaluation.ensemble", "core.evaluation.findings", "core.data", "core.cvae", "dashboards",
            "dashboards.report", "ablations.run_all"]


@pytest.mark.parametrize("command", COMMANDS)
def test_a_command_line_answers_help_before_loading_torch_pandas_or_ray(command):
    code = ("import runpy, sys\n"
            f"sys.argv = [{command!r}, '--help']\n"
            "try:\n"
            f"    runpy.run_module({command!r}, run_name='__main__', alter_sys=True)\n"
            "except SystemExit as e:\n"
            "    assert e.code in (0, None), e.code\n"
            "print(sorted(m for m in ('torch', 'pandas', 'sklearn', 'scipy', 'ray', 'panel', 'matplotlib', 'timm')"
            " if m in sys.modules))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "usage:" in out.stdout and out.stdout.strip().splitlines()[-1] == "[]"
