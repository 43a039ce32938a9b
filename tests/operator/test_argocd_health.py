"""The chart's Argo CD health check (a Lua script), run with lupa on the statuses the operator writes."""

from __future__ import annotations

from lupa import lua51  # Argo CD runs health checks with gopher-lua, a Lua 5.1
from operator_harness import ROOT

from parallelrun.operator.jobs.status import with_progress
from parallelrun.operator.kit.conditions import with_phase
from parallelrun.operator.pipelines.status import with_steps
from parallelrun.runner.accounting import Counts
from parallelrun.runner.pipelines import dag

SCRIPT = (ROOT / "charts/parallelrun/files/argocd-health.lua").read_text()


def health(status: dict | None, generation: int = 1, kind: str = "BatchInferenceJob") -> dict:
    lua = lua51.LuaRuntime(unpack_returned_tuples=True)
    obj = {"kind": kind, "metadata": {"name": "x", "generation": generation}}
    if status is not None:
        obj["status"] = status
    lua.globals().obj = lua.table_from(_listless(obj), recursive=True)
    result = lua.execute(SCRIPT)
    return {"status": result["status"], "message": result["message"]}


def _listless(value):
    """Lists as 1-based Lua tables, as Argo CD hands JSON arrays to its scripts."""
    if isinstance(value, dict):
        return {k: _listless(v) for k, v in value.items()}
    if isinstance(value, list):
        return {i + 1: _listless(v) for i, v in enumerate(value)}
    return value


def test_argocd_health_follows_the_phase():
    assert health(None)["status"] == "Progressing"
    running = with_progress(with_phase({}, "Running", "Scoring", "scoring with Job x-score", 1),
                            Counts(800, 12, 7990, 30), 1000, 2, 1, 0, 4)
    assert health(running) == {"status": "Progressing",
                               "message": "Running: 812/1000 mini-batches (scoring with Job x-score)"}
    assert health(running, generation=2)["message"] == "the operator has not seen the latest spec yet"
    done = with_phase(running, "Succeeded", "Succeeded", "output written to az://out/x.csv", 1)
    assert health(done) == {"status": "Healthy", "message": "output written to az://out/x.csv"}
    failed = with_phase(running, "Failed", "ErrorThresholdExceeded", "31 failed items exceed errorThreshold 30", 1)
    assert health(failed) == {"status": "Degraded",
                              "message": "ErrorThresholdExceeded: 31 failed items exceed errorThreshold 30"}
    refused = with_phase(running, "Failed", "Forbidden", "the Kubernetes API refused to create Job x-score", 1)
    assert health(refused) == {"status": "Degraded",
                               "message": "Forbidden: the Kubernetes API refused to create Job x-score"}
    assert health(with_phase(running, "Failed", "ApiRejected", "too large", 1))["status"] == "Degraded"


def test_argocd_health_of_a_pipeline_run():
    graph = dag.Graph(("prepare", "score", "publish"), (), {"score": ("prepare",), "publish": ("score",)})
    params = {}
    running = with_steps({}, graph, {"prepare": {"phase": "Succeeded"}, "score": {"phase": "Running"}}, params, 1)
    assert health(running, kind="PipelineRun") == {"status": "Progressing",
                                                   "message": "Running: 1/3 steps (running score)"}
    failed = with_steps(running, graph, {"prepare": {"phase": "Succeeded"}, "score": {"phase": "Failed", "message": "x"},
                                         "publish": {"phase": "Skipped"}}, params, 1)
    assert health(failed, kind="PipelineRun") == {"status": "Degraded", "message": "StepFailed: step score failed: x"}
    done = with_steps(running, graph, {name: {"phase": "Succeeded"} for name in graph.names}, params, 1)
    assert health(done, kind="PipelineRun") == {"status": "Healthy", "message": "3 step(s) succeeded"}
