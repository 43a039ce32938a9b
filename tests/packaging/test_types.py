"""The package type-checks: mypy, configured in pyproject.toml ([tool.mypy]), finds no error.

mypy, like grimp, does not follow pyproject's package-dir in a source checkout (runner/ and
operator/ are parallelrun.runner and parallelrun.operator only once installed), so it runs
on the package laid out as installed (installed.py), as the import contracts do.
"""

import subprocess
import sys

from installed import ROOT, installed_layout


def test_the_package_type_checks(tmp_path):
    layout = installed_layout(tmp_path / "layout")
    result = subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml"),
                             "--cache-dir", str(tmp_path / "cache"), "-p", "parallelrun"],
                            cwd=layout, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Success: no issues found" in result.stdout, result.stdout
