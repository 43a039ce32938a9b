"""The repository's top-level folders never shadow the standard library (DESIGN.md, "Layout")."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
INTERPRETERS = [sys.executable] + [p for p in ("/usr/bin/python3",) if os.path.exists(p)]


@pytest.mark.parametrize("python", INTERPRETERS)
def test_no_top_level_folder_shadows_the_standard_library(python):
    """`python -S -c ...` in the root puts the root first on sys.path: operator/ must not be `operator`."""
    result = subprocess.run([python, "-S", "-c", "import collections, json, contextlib, operator; "
                             "print(operator.__file__)"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert not result.stdout.strip().startswith(str(ROOT)), result.stdout


@pytest.mark.skipif(not os.path.exists("/usr/bin/python3"), reason="no Debian python3 here")
def test_a_virtual_environment_can_be_made_in_the_root(tmp_path):
    venv = tmp_path / "venv"
    result = subprocess.run(["/usr/bin/python3", "-m", "venv", "--without-pip", str(venv)], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_the_operator_package_imports_from_anywhere(tmp_path):
    result = subprocess.run([sys.executable, "-c", "import parallelrun.operator.jobs.manifests as m; print(m.__file__)"],
                            cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == str(ROOT / "operator" / "jobs" / "manifests.py")


def test_the_runner_never_imports_the_operator_or_kopf():
    code = ("import sys, parallelrun.runner.local, parallelrun.runner.__main__; "
            "bad = [m for m in sys.modules if m.startswith(('kopf', 'parallelrun.operator', 'kubernetes'))]; "
            "print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_runner_and_operator_package_is_in_the_wheel():
    """setuptools' package list is explicit (package-dir maps runner/ and operator/): a new
    subpackage missing there works in a source checkout and is absent from an installed wheel."""
    tomllib = pytest.importorskip("tomllib")
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"])
    found = {"parallelrun." + ".".join(init.parent.relative_to(ROOT).parts)
             for top in ("runner", "operator") for init in (ROOT / top).rglob("__init__.py")}
    assert found <= listed, f"add to [tool.setuptools] packages: {sorted(found - listed)}"
