"""The structure as an enforced contract (docs/architecture.md): the import contracts of
pyproject.toml hold, name every package, and break on a wrong-way import or a cycle; the linter
runs with its stated rule set and fails on what it is there to find; no module grows past about
500 lines without saying why it is one unit."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

PACKAGES = ("agent", "evaluator", "sandbox")
CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text())
CONTRACTS = CONFIG["tool"]["importlinter"]["contracts"]
MAX_LINES = 520  # "about 500"
REASON = "Why one module"  # what a longer module's docstring says, and then why


def lint_imports(cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", "from importlinter.cli import lint_imports_command; "
                           "lint_imports_command()", "--no-cache"], cwd=cwd, capture_output=True, text=True,
                          env={"PYTHONPATH": str(cwd), "PATH": "/usr/bin:/bin"}, timeout=300)


def copy_of_the_code(tmp_path: Path) -> Path:
    for name in PACKAGES:
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    return tmp_path


def _layers(container: str) -> list[str]:
    [contract] = [c for c in CONTRACTS if c["type"] == "layers" and c.get("containers") == [container]]
    return [name.strip() for layer in contract["layers"] for name in layer.split("|")]


def test_the_layers_run_agent_evaluator_sandbox_and_no_package_has_a_cycle():
    top = [c for c in CONTRACTS if c["type"] == "layers" and "containers" not in c]
    assert [c["layers"] for c in top] == [list(PACKAGES)]
    cycles = [c for c in CONTRACTS if c["type"] == "acyclic_siblings"]
    assert len(cycles) == 1 and sorted(cycles[0]["ancestors"]) == sorted(PACKAGES)
    assert _layers("agent")[:3] == ["__main__", "cli", "commands"]  # the CLI above the library


@pytest.mark.parametrize("package", PACKAGES)
def test_every_module_and_package_has_its_place_in_a_layer(package):
    """A new package or module must be given a layer (a contract that leaves it out checks nothing)."""
    children = {p.stem if p.is_file() else p.name for p in (ROOT / package).iterdir()
                if (p.suffix == ".py" and p.name != "__init__.py") or (p / "__init__.py").is_file()}
    assert sorted(children) == sorted(_layers(package))


def test_the_import_contracts_hold_and_break_on_a_wrong_way_import(tmp_path):
    assert lint_imports(ROOT).returncode == 0
    copy = copy_of_the_code(tmp_path)
    with open(copy / "evaluator" / "records.py", "a") as fh:
        fh.write("\nimport agent.records  # evaluator must never import agent\n")
    out = lint_imports(copy)
    assert out.returncode != 0 and "evaluator is not allowed to import agent" in out.stdout


def test_the_import_contracts_break_on_a_cycle_between_packages(tmp_path):
    copy = copy_of_the_code(tmp_path)
    with open(copy / "evaluator" / "spaces" / "base.py", "a") as fh:
        fh.write("\nimport evaluator.tables.reader  # tables import spaces: now a cycle\n")
    with open(copy / "evaluator" / "tables" / "reader.py", "a") as fh:
        fh.write("\nimport evaluator.spaces.base\n")
    out = lint_imports(copy)
    assert out.returncode != 0 and "BROKEN" in out.stdout


def test_the_linter_passes_and_fails_on_what_it_is_there_to_find(tmp_path):
    ruff = [sys.executable, "-m", "ruff", "check", "--no-cache"]
    assert subprocess.run([*ruff, "."], cwd=ROOT, capture_output=True, text=True).returncode == 0
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / "bad.py").write_text("import os\n\n\ndef f(x=[]):\n    return undefined_name\n")
    out = subprocess.run([*ruff, "bad.py"], cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode != 0 and all(code in out.stdout for code in ("F401", "B006", "F821"))


def test_no_module_is_long_without_saying_why_it_is_one_unit():
    long = []
    for path in sorted([*(ROOT / p for p in PACKAGES), ROOT / "bench"]):
        for module in sorted(path.rglob("*.py")):
            lines = module.read_text().count("\n")
            doc = ast.get_docstring(ast.parse(module.read_text())) or ""
            if lines > MAX_LINES and REASON not in doc:
                long.append(f"{module.relative_to(ROOT)} ({lines} lines)")
    assert not long, f"split these, or say in the docstring ('{REASON} ...') why each is one unit: {long}"
