"""A URI whose scheme no installed package serves: one line naming the URI and the fix, exit 2.

Every class of it, in input and output: a scheme fsspec does not know, and a known one
whose package is not installed (s3fs, gcsfs, adlfs: the azure extra). A package is made
"not installed" for the run by a stub on PYTHONPATH that fails to import, as a missing
one does, whatever this machine has installed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from jobfolder import JobFolder

from parallelrun.runner.contract import PermanentError
from parallelrun.runner.storage import filesystem

MISSING = [  # (uri, the package made missing, the fix the line must give)
    ("s3://bucket/data/", "s3fs", "pip install s3fs"),
    ("gs://bucket/data/", "gcsfs", "pip install gcsfs"),
    ("az://container/data/", "adlfs", "pip install 'parallelrun[azure]'"),
    ("abfs://container/data/", "adlfs", "pip install 'parallelrun[azure]'"),
]


def run(job: JobFolder, path: Path, missing: str | None) -> subprocess.CompletedProcess:
    env = dict(os.environ, COLUMNS="200")
    if missing:
        stubs = job.root / "stubs"
        (stubs / missing).mkdir(parents=True)
        (stubs / missing / "__init__.py").write_text(f"raise ModuleNotFoundError({f'No module named {missing!r}'!r})\n")
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(stubs), env.get("PYTHONPATH")]))
    return subprocess.run([sys.executable, "-m", "parallelrun.cli", "run", str(path)], cwd=job.root,
                          capture_output=True, text=True, timeout=120, env=env)


@pytest.fixture
def job(tmp_path) -> JobFolder:
    folder = JobFolder(tmp_path)
    folder.files(2)
    folder.script("def run(mini_batch):\n    return mini_batch\n")
    return folder


def assert_one_line(result: subprocess.CompletedProcess, *words: str) -> None:
    output = result.stdout + result.stderr
    assert result.returncode == 2, output
    assert "Traceback" not in output, output
    last = output.strip().splitlines()[-1]
    for word in words:
        assert word in last, last


@pytest.mark.parametrize("field", ["input", "output"])
def test_unknown_scheme(job, field):
    uri = "nosuchproto://bucket/data/"
    result = run(job, job.write(**{field: {"uri": uri}}), None)
    assert_one_line(result, uri, "no storage is known for the scheme nosuchproto://", "az://")


@pytest.mark.parametrize("field", ["input", "output"])
@pytest.mark.parametrize("uri, package, fix", MISSING, ids=[m[0].split(":")[0] for m in MISSING])
def test_scheme_whose_package_is_not_installed(job, field, uri, package, fix):
    result = run(job, job.write(**{field: {"uri": uri}}), package)
    assert_one_line(result, uri, f"{package} is not installed", fix)


def test_the_errors_are_permanent(monkeypatch):
    """A run is refused, never retried: the operator fails it (PlanFailed) instead of waiting."""
    with pytest.raises(PermanentError, match="no storage is known"):
        filesystem("nosuchproto://x/")
    monkeypatch.setitem(sys.modules, "gcsfs", None)  # import gcsfs raises ImportError
    with pytest.raises(PermanentError, match="pip install gcsfs"):
        filesystem("gs://bucket/x/", env={})
