"""Fixtures of the chart and CRD tests: a real helm binary, rendering, CRD validation."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml
from chart_paths import CHART, NAMESPACE, RELEASE
from crd_validation import CustomResourceValidator, load_documents
from helm_binary import helm_path


@pytest.fixture(scope="session")
def helm() -> Path:
    return helm_path()


@pytest.fixture(scope="session")
def render(helm: Path) -> Callable[..., list[dict]]:
    """Render the chart with `helm template`, extra helm arguments given; return its objects."""

    def render(*args: str) -> list[dict]:
        result = subprocess.run(
            [str(helm), "template", RELEASE, str(CHART), "--namespace", NAMESPACE, *args],
            capture_output=True, text=True, timeout=120,
        )
        assert result.returncode == 0, result.stderr
        return [doc for doc in yaml.safe_load_all(result.stdout) if doc]

    return render


@pytest.fixture(scope="session")
def crd_validator() -> CustomResourceValidator:
    """Validates parallelrun's and kopf's custom resources against the chart's CRDs."""
    return CustomResourceValidator(load_documents(sorted((CHART / "crds").glob("*.yaml"))))
