"""Fixtures shared by every test folder."""

import pytest
from jobfolder import JobFolder


@pytest.fixture
def job(tmp_path) -> JobFolder:
    return JobFolder(tmp_path)
