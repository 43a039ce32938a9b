"""Fixtures shared by every test folder."""

from pathlib import Path

import pytest
from jobfolder import JobFolder


@pytest.fixture
def job(tmp_path) -> JobFolder:
    return JobFolder(tmp_path)


@pytest.fixture
def calls(tmp_path, monkeypatch) -> Path:
    """The file a test's scoring script appends the items it ran to (CALLS_LOG)."""
    path = tmp_path / "calls.log"
    monkeypatch.setenv("CALLS_LOG", str(path))
    return path
