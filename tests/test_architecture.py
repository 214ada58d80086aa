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


def imported_packages(path: Path) -> set[str]:
    """The top-level package of every import in a module, wherever in the module it stands."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


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
