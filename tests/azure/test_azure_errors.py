"""Azure storage faults end a local run with exit 2 and one line.

A key Azure refuses (403: never retried, the key never printed), an endpoint where
nothing listens (retried for PARALLELRUN_STORAGE_RETRY_SECONDS with a warning each
time, then one line), a container that does not exist.
"""

from __future__ import annotations

import base64
import logging
import os
import subprocess
import sys
import time
import uuid

import pytest
from azurite import ACCOUNT, ACCOUNT_KEY, CREDENTIAL_VARIABLES, free_port

from parallelrun.runner.storage import StorageError, filesystem, retry_waits, storage_error, write_atomic

pytest.importorskip("adlfs")

SCRIPT = """
    def run(mini_batch):
        return [f"{p} ok" for p in mini_batch]
    """
WRONG_KEY = base64.b64encode(b"not the account key of devstoreaccount1, 64 bytes long.........").decode()


def _cli(path, env: dict, timeout: float = 120) -> tuple[subprocess.CompletedProcess, float]:
    env = dict(os.environ, COLUMNS="200", **env)
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "parallelrun.cli", "run", str(path)], cwd=path.parent,
                            capture_output=True, text=True, timeout=timeout, env=env)
    return result, time.monotonic() - started


def _last_line(result: subprocess.CompletedProcess, *fragments: str) -> str:
    assert result.returncode == 2, f"exit {result.returncode}\n{result.stderr[-3000:]}"
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    last = [line for line in result.stderr.splitlines() if line.strip()][-1]
    for fragment in fragments:
        assert fragment in last, f"{fragment!r} not in the last line {last!r}"
    return last


@pytest.fixture
def no_env_credentials(monkeypatch):
    for name in CREDENTIAL_VARIABLES:
        monkeypatch.delenv(name, raising=False)


# -- 403: refused, not retried, the key never shown ---------------------------------------------


def test_wrong_account_key_exits_2_with_one_line(az_job, azurite):
    az_job.upload("in/a.txt", "a\n")
    az_job.script(SCRIPT)
    path = az_job.write()
    wrong = azurite.connection_string.replace(ACCOUNT_KEY, WRONG_KEY)

    result, seconds = _cli(path, {"AZURE_STORAGE_CONNECTION_STRING": wrong})

    last = _last_line(result, "Azure Storage refused access to", az_job.uri("out/"), "403",
                      "check the credentials in AZURE_STORAGE_CONNECTION_STRING")
    assert "spec.storage.secretRef" in last
    output = result.stdout + result.stderr
    assert WRONG_KEY not in output and WRONG_KEY[:20] not in output and "AccountKey" not in output
    assert "retrying" not in output  # a 403 is final
    assert seconds < 30


def test_403_is_not_retried_and_is_classified_in_process(azurite, container, no_env_credentials, caplog):
    wrong = azurite.connection_string.replace(ACCOUNT_KEY, WRONG_KEY)
    fs, path = filesystem(f"az://{container}/out/", env={"AZURE_STORAGE_CONNECTION_STRING": wrong})
    caplog.set_level(logging.WARNING, logger="parallelrun.storage")
    started = time.monotonic()
    with pytest.raises(StorageError) as caught:
        write_atomic(fs, f"{path}/x.txt", b"1")
    assert time.monotonic() - started < 10
    assert not [r for r in caplog.records if "retrying" in r.getMessage()]
    message = str(caught.value)
    assert message.startswith(f"Azure Storage refused access to az://{container}/out/x.txt (403 ")
    assert WRONG_KEY not in message and ACCOUNT_KEY not in message
    assert caught.value.exit_code == 2 and not caught.value.transient


# -- unreachable: bounded retries with a warning each, then one line ------------------------------------


def _dead_endpoint() -> str:
    port = free_port()  # nothing listens there (a race with another process taking it is harmless: no Azure API)
    return (f"DefaultEndpointsProtocol=http;AccountName={ACCOUNT};AccountKey={ACCOUNT_KEY};"
            f"BlobEndpoint=http://127.0.0.1:{port}/{ACCOUNT};"), f"http://127.0.0.1:{port}/{ACCOUNT}"


def test_unreachable_endpoint_gives_up_in_bounded_time(az_job):
    az_job.script(SCRIPT)
    path = az_job.write()
    connection, endpoint = _dead_endpoint()

    result, seconds = _cli(path, {"AZURE_STORAGE_CONNECTION_STRING": connection,
                                  "PARALLELRUN_STORAGE_RETRY_SECONDS": "4"})

    last = _last_line(result, f"cannot reach Azure Storage at {endpoint} for {az_job.uri('out/')}",
                      "after 3 attempts: connection refused", "check the account name/endpoint and the network")
    assert "AccountKey" not in last
    retries = [line for line in result.stderr.splitlines() if "retrying (attempt" in line]
    assert len(retries) >= 1, result.stderr
    assert "storage unreachable" in result.stderr
    assert ACCOUNT_KEY not in result.stdout + result.stderr
    assert seconds < 4 + 25, f"took {seconds:.1f}s"


def test_default_retry_budget_is_about_30_seconds(no_env_credentials, monkeypatch):
    monkeypatch.delenv("PARALLELRUN_STORAGE_RETRY_SECONDS", raising=False)
    connection, _ = _dead_endpoint()
    fs, _ = filesystem(f"az://c{uuid.uuid4().hex[:8]}/x", env={"AZURE_STORAGE_CONNECTION_STRING": connection})
    policy = fs.service_client._config.retry_policy
    assert policy.budget == 30 and sum(policy.waits) <= 30 and len(policy.waits) + 1 == 6
    assert retry_waits(30) == [1, 2, 4, 8, 8]


def test_unreachable_in_process_retries_with_warnings(no_env_credentials, monkeypatch, caplog):
    monkeypatch.setenv("PARALLELRUN_STORAGE_RETRY_SECONDS", "3")
    connection, endpoint = _dead_endpoint()
    fs, path = filesystem(f"az://c{uuid.uuid4().hex[:8]}/out/", env={"AZURE_STORAGE_CONNECTION_STRING": connection})
    caplog.set_level(logging.WARNING, logger="parallelrun.storage")
    started = time.monotonic()
    with pytest.raises(Exception) as caught:
        fs.exists(f"{path}/summary.json")
    assert time.monotonic() - started < 3 + 10
    error = storage_error(caught.value, "az://x/out/")
    assert str(error) == (f"cannot reach Azure Storage at {endpoint} for az://x/out/ after 3 attempts: "
                          "connection refused; check the account name/endpoint and the network")
    assert error.transient
    warnings = [r.getMessage() for r in caplog.records]
    assert warnings == [f"storage unreachable (connection refused), retrying (attempt {n}/3 in {s}s): {endpoint}"
                        for n, s in ((2, 1), (3, 2))]


# -- a container that does not exist ---------------------------------------------------------------------


def test_missing_input_container(az_job):
    az_job.script(SCRIPT)
    missing = f"missing{uuid.uuid4().hex[:8]}"
    path = az_job.write(input={"uri": f"az://{missing}/in/"})
    result, _ = _cli(path, {})
    _last_line(result, f"az://{missing}/in/", "does not exist")


def test_missing_output_container(az_job):
    az_job.upload("in/a.txt", "a\n")
    az_job.script(SCRIPT)
    missing = f"missing{uuid.uuid4().hex[:8]}"
    path = az_job.write(output={"uri": f"az://{missing}/out/"})
    result, _ = _cli(path, {})
    _last_line(result, f"Azure Storage container '{missing}' does not exist", f"az://{missing}/out/",
               "create it or fix the URI")
