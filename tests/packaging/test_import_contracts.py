"""The import contracts of pyproject.toml ([tool.importlinter]) hold: the layers of
docs/architecture.md, checked on the import graph, not only on what a test happens to import.

grimp (import-linter's import graph) finds a package's modules by walking its folder.
In a source checkout parallelrun's sub-packages live in runner/ and operator/
(pyproject's package-dir), which it does not follow, and operator/ has no __init__.py
on purpose (parallelrun/__init__.py): it would see neither. So `lint-imports` runs on
the package laid out as it is installed, a link per source file in a temporary folder.
"""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {"parallelrun": ROOT / "parallelrun", "parallelrun/runner": ROOT / "runner",
            "parallelrun/operator": ROOT / "operator"}


def installed_layout(target: Path) -> Path:
    """`target`/parallelrun/, every folder a regular package, each module a link to its source."""
    for name, source in PACKAGES.items():
        for path in source.rglob("*.py"):
            link = target / name / path.relative_to(source)
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(path)
        init = target / name / "__init__.py"
        if not init.exists():  # operator/: a namespace in the source, a package to grimp
            init.touch()
    return target


def test_the_import_contracts_hold(tmp_path):
    lint_imports = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run([str(lint_imports), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
                            cwd=installed_layout(tmp_path), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout, result.stdout
