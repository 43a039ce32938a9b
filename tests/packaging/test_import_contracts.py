"""The import contracts of pyproject.toml ([tool.importlinter]) hold: the layers of
docs/architecture.md, checked on the import graph, not only on what a test happens to import.

grimp (import-linter's import graph) finds a package's modules by walking its folder, which
does not follow pyproject's package-dir in a source checkout: `lint-imports` runs on the
package laid out as it is installed (installed.py).
"""

import subprocess
import sys
from pathlib import Path

from installed import ROOT, installed_layout


def test_the_import_contracts_hold(tmp_path):
    lint_imports = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run([str(lint_imports), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
                            cwd=installed_layout(tmp_path), capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 broken" in result.stdout, result.stdout
