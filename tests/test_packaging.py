"""pyproject.toml, the requirements files and the `dermablate` console script agree with each other and the code.

The rules the files keep (no network, no pip here; `packaging` comes with pytest):

- requirements.txt = pyproject's base dependencies + its ray, dashboard and weights extras
  (what a Ray job's working directory and cluster.yaml's nodes install);
- requirements-tracking.txt = the trackers extra, line for line (tensorboardX included);
- requirements-dev.txt = `-r requirements.txt`, `-r requirements-tracking.txt` and exactly the
  tools of the dev extra, whose self-reference `dermablate[...]` takes in every extra above;
- every third-party module that core/, ray_jobs/, ablations/ or dashboards/ imports comes from a
  distribution that pyproject lists for that layer (core: base; dashboards: base + dashboard;
  ray_jobs and ablations: base + ray + trackers); benchmarks/ is not scanned;
- Ray is pinned the same everywhere it is pinned.
"""
from __future__ import annotations

import ast
import functools
import importlib.metadata
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest brings tomli there
    import tomli as tomllib

from dermablate import cli

REPO = Path(__file__).resolve().parents[1]
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]
EXTRAS = PROJECT["optional-dependencies"]
# The pyproject lists each layer's imports come from (the rule in the docstring).
LAYERS = {"core": ["base", "export"], "dashboards": ["base", "dashboard"],
          "ray_jobs": ["base", "ray", "trackers"], "ablations": ["base", "ray", "trackers"]}
# Modules a layer may import although pyproject lists no distribution of theirs, each with why.
# Keep it short: an import of anything else must name its distribution in pyproject.toml.
UNLISTED: dict[str, str] = {}
HEAVY = ("torch", "numpy", "pandas", "ray", "panel")  # what `dermablate --help` must not import


def key(requirement: str | Requirement) -> tuple:
    """A requirement as a comparable value: its name normalised, extras, version ranges and markers."""
    req = requirement if isinstance(requirement, Requirement) else Requirement(requirement)
    return canonicalize_name(req.name), frozenset(req.extras), req.specifier, str(req.marker or "")


def keys(requirements) -> set[tuple]:
    return {key(r) for r in requirements}


def read_requirements(name: str) -> tuple[list[str], list[str]]:
    """A requirements file's requirement lines and the files its -r lines include."""
    reqs, includes = [], []
    for line in (REPO / name).read_text().splitlines():
        line = line.split(" #", 1)[0].strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("-r "):
            includes.append(line[3:].strip())
        else:
            assert not line.startswith("-"), f"{name}: {line!r} is neither a requirement nor -r FILE"
            reqs.append(line)
    return reqs, includes


def listed(*groups: str) -> list[str]:
    """pyproject's requirements of `groups`: "base" for the dependencies, else an extra's name."""
    return [r for group in groups for r in (PROJECT["dependencies"] if group == "base" else EXTRAS[group])]


def first_party() -> set[str]:
    packages = {p.rstrip("*").split(".")[0] for p in PYPROJECT["tool"]["setuptools"]["packages"]["find"]["include"]}
    return packages | {"tests", "benchmarks"}


def third_party_imports(folder: Path) -> dict[str, set[str]]:
    """Top-level module -> the files under `folder` that import it, for every module neither stdlib nor ours."""
    ours, found = first_party(), {}
    for path in sorted(folder.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for top in {name.split(".")[0] for name in names} - ours - set(sys.stdlib_module_names):
                found.setdefault(top, set()).add(path.name)
    return found


@functools.cache
def distributions() -> dict[str, list[str]]:
    """Top-level module -> the installed distributions that provide it."""
    return dict(importlib.metadata.packages_distributions())


def unlisted_imports(folder: Path, groups: list[str]) -> dict[str, str]:
    """The modules imported under `folder` that no distribution among pyproject's `groups` provides, and why."""
    allowed = {canonicalize_name(Requirement(r).name) for r in listed(*groups)}
    unlisted = {}
    for module, files in sorted(third_party_imports(folder).items()):
        provided_by = {canonicalize_name(d) for d in distributions().get(module, [])}
        if module not in UNLISTED and not provided_by & allowed:
            why = f"from {', '.join(sorted(provided_by))}" if provided_by else "not installed"
            unlisted[module] = f"{why}; imported by {', '.join(sorted(files))}; list it in {' or '.join(groups)}"
    return unlisted


def test_requirements_txt_is_the_base_and_the_ray_dashboard_weights_extras():
    reqs, includes = read_requirements("requirements.txt")
    assert includes == []
    assert len(reqs) == len(keys(reqs)), "requirements.txt names a requirement twice"
    assert keys(reqs) == keys(listed("base", "ray", "dashboard", "weights"))


def test_requirements_tracking_txt_is_the_trackers_extra():
    reqs, includes = read_requirements("requirements-tracking.txt")
    assert includes == []
    assert keys(reqs) == keys(EXTRAS["trackers"])


def test_requirements_export_txt_is_the_export_extra():
    reqs, includes = read_requirements("requirements-export.txt")
    assert includes == []
    assert keys(reqs) == keys(EXTRAS["export"])


def test_requirements_dev_txt_is_the_dev_extra():
    reqs, includes = read_requirements("requirements-dev.txt")
    assert sorted(includes) == ["requirements-export.txt", "requirements-tracking.txt", "requirements.txt"]
    itself = [Requirement(r) for r in EXTRAS["dev"] if canonicalize_name(Requirement(r).name) == PROJECT["name"]]
    assert [sorted(r.extras) for r in itself] == [["dashboard", "export", "ray", "trackers", "weights"]]
    tools = [r for r in EXTRAS["dev"] if canonicalize_name(Requirement(r).name) != PROJECT["name"]]
    assert keys(reqs) == keys(tools)


def test_the_installed_versions_lie_in_the_listed_ranges():
    """What this environment was tested with is what pyproject allows."""
    outside = {}
    for req in map(Requirement, listed("base", "ray", "dashboard", "trackers", "weights", "export", "dev")):
        try:
            version = importlib.metadata.version(req.name)
        except importlib.metadata.PackageNotFoundError:
            continue  # an unlisted-but-imported module fails the import test below instead
        if req.name != PROJECT["name"] and not req.specifier.contains(version, prereleases=True):
            outside[req.name] = f"{version} not in {req.specifier}"
    assert outside == {}


@pytest.mark.parametrize("layer", sorted(LAYERS))
def test_every_library_a_layer_imports_is_listed_for_it(layer):
    assert unlisted_imports(REPO / layer, LAYERS[layer]) == {}


def test_an_import_of_an_unlisted_library_is_caught(tmp_path):
    (tmp_path / "m.py").write_text("import os\nimport numpy\n\ndef f():\n    from wandb import Run\n"
                                   "    import surely_not_a_dermablate_dependency.sub\n    from . import sibling\n")
    (tmp_path / "n.py").write_text("from core.config import load\nimport ray_jobs\n")
    assert set(unlisted_imports(tmp_path, ["base"])) == {"wandb", "surely_not_a_dermablate_dependency"}
    assert set(unlisted_imports(tmp_path, ["base", "trackers"])) == {"surely_not_a_dermablate_dependency"}


def test_cli_help_lists_every_subcommand_and_imports_nothing_heavy():
    out = subprocess.run([sys.executable, "-m", "dermablate", "--help"], cwd=REPO, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    listing = out.stdout.split("subcommands:", 1)[1]
    for name, (_, summary) in cli.COMMANDS.items():
        assert re.search(rf"^\s+{name}\s+{re.escape(summary)}$", listing, re.M), name
    code = ("import sys, contextlib, io, dermablate.cli\n"
            "with contextlib.suppress(SystemExit), contextlib.redirect_stdout(io.StringIO()):\n"
            "    dermablate.cli.main(['--help'])\n"
            f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_every_subcommand_module_has_a_main_taking_argv():
    """Read, not imported: each target's source holds a top-level `def main(argv...)`."""
    lacking = []
    for name, (module, _) in cli.COMMANDS.items():
        path = REPO / (module.replace(".", "/") + ".py")
        tree = ast.parse(path.read_text()) if path.is_file() else ast.Module(body=[], type_ignores=[])
        mains = [node for node in tree.body if isinstance(node, ast.FunctionDef) and node.name == "main"]
        if not (mains and [a.arg for a in mains[0].args.args][:1] == ["argv"]):
            lacking.append(f"{name}: {module}")
    assert lacking == []


def test_arguments_after_the_subcommand_reach_the_module_unchanged(monkeypatch):
    calls = []
    fake = types.ModuleType("fake_subcommand_target")
    fake.main = lambda argv: calls.append(argv) or (3 if argv == ["fail"] else None)
    monkeypatch.setitem(sys.modules, fake.__name__, fake)
    monkeypatch.setitem(cli.COMMANDS, "train", (fake.__name__, "a stand-in"))
    args = ["--help", "-v", "--", "--config", "x.yaml", "-h"]
    assert cli.main(["train", *args]) == 0  # the module's None counts as 0
    assert cli.main(["train"]) == 0
    assert cli.main(["train", "fail"]) == 3  # the module's status is the exit status
    assert calls == [args, [], ["fail"]]


def test_a_subcommand_help_is_the_module_own():
    out = subprocess.run([sys.executable, "-m", "dermablate", "compare", "--help"], cwd=REPO,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.startswith("usage: python -m core.evaluation.compare") and "SUBCOMMAND" not in out.stdout


def test_an_unknown_subcommand_is_an_error():
    out = subprocess.run([sys.executable, "-m", "dermablate", "trian"], cwd=REPO, capture_output=True,
                         text=True, timeout=60)
    assert out.returncode == 2 and "invalid choice: 'trian'" in out.stderr


def test_ray_is_pinned_alike_everywhere():
    def ray_pins(requirements):
        return {key(r)[2] for r in map(Requirement, requirements) if canonicalize_name(r.name) == "ray"}

    pyproject = ray_pins(EXTRAS["ray"])
    assert len(pyproject) == 1 and ray_pins(read_requirements("requirements.txt")[0]) == pyproject
    (pin,) = pyproject
    assert any(s.operator == "<" for s in pin), "pin Ray below the next minor release (its internals are used)"
    # cluster.yaml installs requirements.txt; a ray version it names itself must be the same pin.
    lines = [line.split("#", 1)[0] for line in (REPO / "cluster.yaml").read_text().splitlines()]
    named = [m.group(0).strip("'\" ") for line in lines
             for m in re.finditer(r"""["']?\bray(\[[\w,\s-]*\])?\s*[=<>~!][^\s"']*["']?""", line)]
    assert {Requirement(r).specifier for r in named} <= pyproject, named
