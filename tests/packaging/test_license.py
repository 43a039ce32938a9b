"""The licence: Apache-2.0, as Kubernetes, kopf and Ray use, in the repository, the metadata and the image."""

from importlib.metadata import metadata
from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[2]


def test_the_repository_carries_the_apache_license():
    text = (ROOT / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "TERMS AND CONDITIONS FOR USE, REPRODUCTION, AND DISTRIBUTION" in text


def test_pyproject_declares_it_as_an_spdx_expression():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["license"] == "Apache-2.0"
    assert project["license-files"] == ["LICENSE"]


def test_the_installed_distribution_says_so():
    assert metadata("parallelrun")["License-Expression"] == "Apache-2.0"


def test_the_image_builds_with_the_license_file():
    """pip builds the wheel in the image from what the Dockerfile copied: license-files must be there."""
    copies = [line for line in (ROOT / "Dockerfile").read_text().splitlines() if line.startswith("COPY")]
    assert any("LICENSE" in line.split()[1:-1] for line in copies), copies
