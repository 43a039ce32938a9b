"""Fixtures of the Azure Blob tests: a real Azurite, its connection string, a container per test.

Azurite is installed with npm into ~/.cache/parallelrun/azurite when `azurite-blob` is
not found. Where it cannot be had (no node, npm or registry) the tests are skipped,
except under CI=true, where that is an error: CI must run them.
"""

from __future__ import annotations

import textwrap
import uuid
from pathlib import Path

import pytest
import yaml
from azurite import CREDENTIAL_VARIABLES, Azurite, start_for_tests


@pytest.fixture(scope="session")
def azurite(tmp_path_factory) -> Azurite:
    """A running Azurite blob service on a free port of 127.0.0.1, stopped at session end."""
    server = start_for_tests(tmp_path_factory.mktemp("azurite"))
    yield server
    server.stop()


@pytest.fixture
def connection_string(azurite, monkeypatch) -> str:
    """Azurite's connection string in AZURE_STORAGE_CONNECTION_STRING (inherited by worker
    processes and CLI subprocesses), with no other Azure credential variable set."""
    for name in CREDENTIAL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", azurite.connection_string)
    return azurite.connection_string


@pytest.fixture
def azfs(azurite):
    """An adlfs filesystem on Azurite, credentials given explicitly."""
    from adlfs import AzureBlobFileSystem

    return AzureBlobFileSystem(connection_string=azurite.connection_string)


@pytest.fixture
def container(azfs) -> str:
    """A new, empty container of this test's own; removed afterwards."""
    name = f"t{uuid.uuid4().hex[:16]}"
    azfs.mkdir(name)
    yield name
    try:
        azfs.rm(name, recursive=True)
    except Exception:  # noqa: BLE001 - Azurite's folder goes away with the session anyway
        pass


class AzureJob:
    """A BatchInferenceJob whose input, model and output live in one container.

    The job YAML and the scoring script sit in a local folder (code.uri: "."), as a
    user's would; `uri(path)` is the az:// URL of a path in the container.
    """

    def __init__(self, root: Path, fs, container: str):
        self.root, self.fs, self.container = root, fs, container

    def uri(self, path: str = "") -> str:
        return f"az://{self.container}/{path}"

    def blob(self, path: str) -> str:
        """The path of a blob inside the filesystem (no protocol)."""
        return f"{self.container}/{path}"

    def upload(self, path: str, data: bytes | str) -> None:
        self.fs.pipe_file(self.blob(path), data.encode() if isinstance(data, str) else data)

    def read(self, path: str) -> bytes:
        return self.fs.cat_file(self.blob(path))

    def exists(self, path: str) -> bool:
        return self.fs.exists(self.blob(path))

    def script(self, body: str, name: str = "score.py") -> Path:
        path = self.root / name
        path.write_text(textwrap.dedent(body))
        return path

    def write(self, **spec) -> Path:
        """The job YAML with `spec` over a default of files input from in/ to out/."""
        full = {"input": {"uri": self.uri("in/"), "type": "files"}, "code": {"uri": ".", "entryScript": "score.py"},
                "output": {"uri": self.uri("out/")}, "processCountPerNode": 1, "runInvocationTimeout": 30}
        for key, value in spec.items():
            full[key] = {**full[key], **value} if isinstance(value, dict) and isinstance(full.get(key), dict) else value
        path = self.root / "job.yaml"
        path.write_text(yaml.safe_dump({"apiVersion": "parallelrun.dev/v1alpha1", "kind": "BatchInferenceJob",
                                        "metadata": {"name": "azure-test"}, "spec": full}))
        return path


@pytest.fixture
def az_job(tmp_path, azfs, container, connection_string) -> AzureJob:
    folder = tmp_path / "job"
    folder.mkdir()
    return AzureJob(folder, azfs, container)
