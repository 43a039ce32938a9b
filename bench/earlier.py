"""An earlier commit of parallelrun, importable beside this one: for benchmarks that compare.

`pythonpath(commit)` extracts the commit (git archive) under the temp dir once and lays
out a `parallelrun` package there (its cli.py, `runner` and `operator` linked in), so a
process started with PYTHONPATH set to the returned folder imports that version instead
of the installed (editable) one. Its modules are byte-compiled, as an installed package's are.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def pythonpath(commit: str) -> str:
    sha = subprocess.run(["git", "rev-parse", commit], cwd=ROOT, capture_output=True, text=True,
                         check=True).stdout.strip()
    base = Path(tempfile.gettempdir()) / f"parallelrun-at-{sha[:12]}"
    package = base / "path" / "parallelrun"
    if not package.exists():
        shutil.rmtree(base, ignore_errors=True)
        (base / "src").mkdir(parents=True)
        archive = subprocess.run(["git", "archive", sha], cwd=ROOT, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(base / "src")], input=archive, check=True)
        shutil.copytree(base / "src" / "parallelrun", package)
        for name in ("runner", "operator"):
            os.symlink(base / "src" / name, package / name)
        subprocess.run([sys.executable, "-m", "compileall", "-q", str(base / "src")], check=True)  # as installed
    return str(base / "path")
