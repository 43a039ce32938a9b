"""The operator's path: credentials passed explicitly (a Secret's data), never read from this process's env."""

from __future__ import annotations

import base64

import pytest
from azurite import ACCOUNT_KEY, CREDENTIAL_VARIABLES

from parallelrun.runner.layout import Layout
from parallelrun.runner.planning import ensure_plan, make_plan, read_shard
from parallelrun.runner.spec import load_spec
from parallelrun.runner.storage import filesystem


@pytest.fixture
def no_env_credentials(monkeypatch):
    for name in CREDENTIAL_VARIABLES:
        monkeypatch.delenv(name, raising=False)


def _spec(container: str):
    return load_spec({"apiVersion": "parallelrun.dev/v1alpha1", "kind": "BatchInferenceJob",
                      "metadata": {"name": "creds"},
                      "spec": {"input": {"uri": f"az://{container}/in/", "type": "tabular", "format": "csv"},
                               "code": {"entryScript": "score.py"}, "output": {"uri": f"az://{container}/out/"},
                               "miniBatchSize": 4, "nodeCount": 2, "storage": {"secretRef": {"name": "blob-creds"}}}})


def test_plan_with_secret_data_and_no_env(azurite, azfs, container, no_env_credentials):
    azfs.pipe_file(f"{container}/in/data.csv", b"id\n" + b"".join(b"%d\n" % i for i in range(10)))
    secret = {"AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string}

    fs, path = filesystem(f"az://{container}/in/", env=secret)
    assert path == f"{container}/in"
    assert fs.ls(path, detail=False) == [f"{container}/in/data.csv"]

    spec = _spec(container)
    plan = make_plan(spec, env=secret)
    assert [(mb.file, mb.items) for mb in plan.mini_batches] == [("data.csv", 4), ("data.csv", 4), ("data.csv", 2)]

    # As the operator does: write the plan to the output with the same secret.
    out_fs, out = filesystem(spec.output.uri, env=secret)
    layout = Layout(out, "creds-1")
    ensure_plan(spec, out_fs, layout, env=secret)
    assert [mb.items for s in range(2) for mb in read_shard(out_fs, layout, s)] == [4, 4, 2]
    written = b"".join(out_fs.cat_file(p) for p in out_fs.find(layout.root))
    assert ACCOUNT_KEY.encode() not in written and b"AccountKey" not in written


def test_explicit_secret_wins_over_the_process_env(azurite, azfs, container, monkeypatch, no_env_credentials):
    azfs.pipe_file(f"{container}/in/data.csv", b"id\n1\n2\n")
    wrong = azurite.connection_string.replace(ACCOUNT_KEY, "d3Jvbmcga2V5" * 4 + "AAAAAAAAAAAAAAAAAAAAAA==")
    monkeypatch.setenv("AZURE_STORAGE_CONNECTION_STRING", wrong)  # the operator pod's own env: not this job's
    plan = make_plan(_spec(container), env={"AZURE_STORAGE_CONNECTION_STRING": azurite.connection_string})
    assert plan.total_items == 2


def test_operator_plans_from_a_secret(azurite, azfs, container, no_env_credentials):
    """The operator's own planning step, given the Secret named by spec.storage.secretRef."""
    from parallelrun.operator.jobs.planning import plan_run
    from parallelrun.operator.kit.credentials import secret_env

    azfs.pipe_file(f"{container}/in/data.csv", b"id\n" + b"".join(b"%d\n" % i for i in range(10)))
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "blob-creds"},
              "data": {"AZURE_STORAGE_CONNECTION_STRING": base64.b64encode(azurite.connection_string.encode()).decode()}}
    plan = plan_run(_spec(container), "creds-2", secret_env(secret))
    assert plan.total_mini_batches == 3 and plan.total_items == 10
    assert azfs.exists(f"{container}/out/_parallelrun/creds-2/plan/plan.json")
