"""The cluster variants of the example pipelines against a real Azurite: components read from
blob storage with their code, remote inputs downloaded and outputs uploaded by the step
runner, the reuse index in the remote workdir."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.append(str(Path(__file__).resolve().parents[1] / "azure"))
from azurite import CREDENTIAL_VARIABLES, start_for_tests

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


@pytest.fixture(scope="module")
def azure(tmp_path_factory):
    """Azurite with examples/ uploaded (components, and the digits and iris scripts) to container `examples`."""
    from adlfs import AzureBlobFileSystem

    server = start_for_tests(tmp_path_factory.mktemp("azurite"))
    fs = AzureBlobFileSystem(connection_string=server.connection_string)
    for container in ("examples", "digits", "iris"):
        fs.mkdir(container)
    for path in sorted(EXAMPLES.rglob("*")):
        relative = path.relative_to(EXAMPLES).as_posix()
        if path.is_file() and relative.startswith(("components/", "digits/", "iris/")) and path.suffix in (
                ".yaml", ".py"):
            fs.pipe_file(f"examples/{relative}", path.read_bytes())
    yield server, fs
    server.stop()


def cli(azure, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    server, _ = azure
    env = {k: v for k, v in os.environ.items() if k not in CREDENTIAL_VARIABLES}
    env["AZURE_STORAGE_CONNECTION_STRING"] = server.connection_string
    return subprocess.run([sys.executable, "-m", "parallelrun.cli", *args], capture_output=True, text=True,
                          timeout=280, cwd=cwd, env=env)


def test_the_cluster_pipelines_validate_with_their_components_from_blob_storage(azure, tmp_path):
    files = [str(p) for p in sorted((EXAMPLES / "pipelines").glob("*/pipeline-azure.yaml"))]
    result = cli(azure, "validate", *files, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("its components are valid") == 3


def test_the_digits_pipeline_runs_on_blob_storage_and_reuses_there(azure, tmp_path):
    _, fs = azure
    pipeline = EXAMPLES / "pipelines" / "digits" / "pipeline-azure.yaml"
    first = cli(azure, "run", str(pipeline), cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    lines = fs.cat_file("digits/pipelines/digits/score/predictions/parallel_run_step.txt").decode().splitlines()
    assert len(lines) == 1797 and lines[0].startswith("digit_00000.png: ")
    assert len(fs.ls("digits/pipelines/digits/prepare/images/")) == 1800  # uploaded by the step runner
    assert len(fs.glob("digits/pipelines/_parallelrun/cache/*.json")) == 2  # an index entry per step
    assert len(fs.ls("digits/pipelines/_parallelrun/cache/outputs/")) == 3  # and who wrote each output place
    second = cli(azure, "run", str(pipeline), cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "step prepare: Reused" in second.stderr and "step score: Reused" in second.stderr
