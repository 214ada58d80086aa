"""The layering of docs/ARCHITECTURE.md, held by the imports each folder's modules make."""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FORBIDDEN = {
    "core": {"ray", "ray_jobs", "dashboards", "panel", "ablations"},
    "dashboards": {"ray", "ray_jobs"},
}


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
    evaluation = {name for name in imported_modules(REPO / "core" / "train.py") if name.startswith("core.evaluation")}
    assert evaluation == {"core.evaluation"}


def test_evaluating_predictions_imports_no_torch():
    code = ("import sys, core.evaluation, core.evaluation.compare, core.evaluation.ensemble; "
            "print(sorted(m for m in ('torch', 'timm') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
