"""`parallelrun operator` as a process of its own: kubeconfig login, liveness, metrics, JSON logs."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import sys
import urllib.request

import pytest
import yaml
from operator_harness import create, eventually, resource, status_of

pytestmark = pytest.mark.timeout(90)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url: str) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.read().decode()
    except OSError:
        return None


async def test_operator_process_serves_liveness_and_metrics(cluster, kube, inputs, tmp_path):
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "emulator",
        "clusters": [{"name": "emulator", "cluster": {"server": str(cluster.url).rstrip("/")}}],
        "users": [{"name": "tester", "user": {}}],
        "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "tester"}}]}))
    liveness, metrics = free_port(), free_port()
    log = tmp_path / "operator.log"
    env = dict(os.environ, KUBECONFIG=str(kubeconfig), PARALLELRUN_JOB_IMAGE="example.com/scorer:1")
    with open(log, "wb") as out:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "parallelrun.cli", "operator", "--all-namespaces", "--standalone", "--local-storage",
            f"--liveness=http://127.0.0.1:{liveness}/healthz", f"--metrics-port={metrics}", "--log-format=json",
            env=env, stdout=out, stderr=asyncio.subprocess.STDOUT)
    try:
        await create(kube, resource("proc", inputs))
        await eventually(lambda: status_of(cluster, "proc").get("phase") == "Running", timeout=30)
        assert cluster.get("jobs", "proc-score")["spec"]["template"]["spec"]["containers"][0]["image"] == \
            "example.com/scorer:1"  # from $PARALLELRUN_JOB_IMAGE

        probe = await eventually(lambda: http_get(f"http://127.0.0.1:{liveness}/healthz"), timeout=10)
        assert json.loads(probe) is not None
        samples = await asyncio.to_thread(http_get, f"http://127.0.0.1:{metrics}/metrics")
        assert 'parallelrun_jobs{phase="Running"} 1.0' in samples
        assert "parallelrun_reconcile_duration_seconds_count" in samples
        assert "parallelrun_plan_duration_seconds_count 1.0" in samples
    finally:
        process.terminate()
        code = await asyncio.wait_for(process.wait(), 20)
    assert code in (0, -15), log.read_text()[-2000:]
    records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]  # one JSON object a line
    about = [r["message"] for r in records if (r.get("object") or {}).get("name") == "proc"]
    assert about[:2] == ["Planning: listing " + inputs["input"],
                         "Started: scoring 10 mini-batches on 2 node(s) with Job proc-score"]
    assert not [m for r in records if "succeeded." in (m := r["message"]) and "_changed" in m]  # no wake-up noise
