"""The layout of ``core/``: one-way package dependencies, one TensorFlow import point, a README that matches the tree."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[1]
# Imported lazily, inside the functions that need them: heavy and optional at import time.
LAZY_OK = ("core.models.tfkeras", "tensorflow", "tf_keras", "tensorflow_model_optimization", "ai_edge_litert")


def _core_modules() -> list[Path]:
    return sorted(p for p in (REPO / "core").rglob("*.py") if "__pycache__" not in p.parts)


def test_the_dependency_contracts_hold(tmp_path, monkeypatch):
    """`.importlinter`: artifacts <- data <- models <- evaluate <- train | deploy <- orchestrate <- cli, and
    only core.models.tfkeras imports TensorFlow."""
    from importlinter.cli import lint_imports

    monkeypatch.chdir(REPO)
    monkeypatch.syspath_prepend(str(REPO))
    assert lint_imports(config_filename=str(REPO / ".importlinter"), no_cache=True, no_logo=True) == 0


def test_the_contract_catches_an_upward_import(tmp_path, monkeypatch):
    """The layers contract is not vacuous: a copy of core whose artifacts layer imports the deploy layer breaks it."""
    import shutil

    from importlinter.cli import lint_imports

    copy = tmp_path / "repo"
    shutil.copytree(REPO / "core", copy / "core", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / ".importlinter", copy / ".importlinter")
    layout = copy / "core" / "artifacts" / "layout.py"
    layout.write_text(layout.read_text() + "\nfrom core.deploy import variants  # noqa: E402\n")
    monkeypatch.chdir(copy)
    monkeypatch.syspath_prepend(str(copy))
    for name in [m for m in sys.modules if m == "core" or m.startswith("core.")]:
        monkeypatch.delitem(sys.modules, name)
    assert lint_imports(config_filename=str(copy / ".importlinter"), no_cache=True, no_logo=True) == 1


def test_importing_every_module_but_the_tensorflow_one_loads_no_tensorflow():
    modules = [".".join(p.relative_to(REPO).with_suffix("").parts) for p in _core_modules()]
    modules = [m.removesuffix(".__init__") for m in modules if m not in ("core.__main__", "core.models.tfkeras")]
    code = ("import importlib, sys\n"
            f"for m in {modules!r}: importlib.import_module(m)\n"
            "heavy = sorted(k for k in sys.modules if k.split('.')[0] in ('tensorflow', 'tf_keras', 'ai_edge_litert'))\n"
            "print(heavy[:3])\n"
            "sys.exit(1 if heavy else 0)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr


def test_imports_inside_functions_are_only_the_heavy_optional_libraries():
    """Everything else is imported at the top of its module. The exception is the CLI, the entry point: each
    command imports its implementation when it runs, so ``--help`` stays fast (its docstring has the figures)."""
    stdlib = set(sys.stdlib_module_names)
    found = []
    for path in _core_modules():
        if path == REPO / "core" / "cli.py":
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for func in (n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))):
            for node in ast.walk(func):
                if isinstance(node, ast.ImportFrom) and node.level == 0:
                    names = [node.module or ""]
                elif isinstance(node, ast.Import):
                    names = [a.name for a in node.names]
                else:
                    continue
                for name in names:
                    if name.startswith("core") and not name.startswith(LAZY_OK) or name.split(".")[0] in stdlib:
                        found.append(f"{path.relative_to(REPO)}:{node.lineno} {name}")
    assert not found, "imports inside functions:\n" + "\n".join(found)


def test_the_readme_layout_table_matches_the_tree():
    """Every path the README's project-layout table names exists, and every package and module of core/ is named."""
    text = (REPO / "README.md").read_text(encoding="utf-8")
    section = text.split("## Project layout", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`([A-Za-z0-9_./-]+)`", section))
    paths = {n for n in named if "/" in n or n.endswith((".py", ".txt", ".toml"))}
    missing = sorted(p for p in paths if not (REPO / p.rstrip("/")).exists())
    assert not missing, f"the README names paths that do not exist: {missing}"
    listed_dirs = {p.rstrip("/") for p in paths}
    unnamed = []
    for path in _core_modules():
        rel = path.relative_to(REPO).as_posix()
        if path.name == "__init__.py":  # a package: named in the dependency diagram
            package = os.path.dirname(rel).replace("/", ".")
            if package != "core" and package not in section:
                unnamed.append(package)
        elif rel not in listed_dirs and path.name != "__main__.py":
            unnamed.append(rel)
    assert not unnamed, f"modules of core/ missing from the README's layout table: {unnamed}"


def test_the_cli_starts_without_loading_the_heavy_libraries():
    code = ("import sys\nfrom core.cli import build_parser\nbuild_parser()\n"
            "heavy = sorted(k for k in ('pandas', 'sklearn', 'scipy', 'tensorflow') if k in sys.modules)\n"
            "print(heavy)\nsys.exit(1 if heavy else 0)\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
