"""Pods and Jobs to counts and verdicts; status and conditions; the CLI: pure functions."""

from __future__ import annotations

import json

import pytest

from parallelrun.operator.jobs.aggregation import observe_merge, observe_scoring, shards
from parallelrun.operator.jobs.status import with_progress
from parallelrun.operator.kit.conditions import with_phase, with_spec_check
from parallelrun.operator.kit.observe import JobState, PodState, job_state, pod_state
from parallelrun.operator.main import parser, run_options
from parallelrun.runner.accounting import Counts
from parallelrun.runner.records import ShardProgress, progress_total
from parallelrun.runner.spec import load_spec


def spec(**fields):
    base = {"input": {"uri": "/data/", "type": "files"}, "code": {"entryScript": "s.py"},
            "output": {"uri": "/out/"}, "nodeCount": 2}
    return load_spec(dict(base, **fields))


def report(ok: int, failed: int = 0, **extra) -> str:
    return json.dumps({"miniBatches": {"succeeded": ok, "failed": failed},
                       "items": {"succeeded": ok, "failed": failed}, **extra})


def pod(index: int, phase: str, exit_code: int | None = None, message: str = "", attempt: int = 0,
        component: str = "scoring") -> PodState:
    return PodState(name=f"p-{index}-{attempt}", component=component, index=index, order=(attempt, "", ""),
                    phase=phase, exit_code=exit_code, message=message)


def test_pod_state_reads_the_runner_container():
    body = {"metadata": {"name": "x-score-1-abcde", "creationTimestamp": "2026-01-01T00:00:00Z",
                         "labels": {"app.kubernetes.io/component": "scoring",
                                    "batch.kubernetes.io/job-completion-index": "1"},
                         "annotations": {"batch.kubernetes.io/job-index-failure-count": "2"}},
            "status": {"phase": "Failed", "containerStatuses": [
                {"name": "sidecar", "state": {"terminated": {"exitCode": 0}}},
                {"name": "runner", "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled", "message": "x"}}}]}}
    state = pod_state(body)
    assert (state.index, state.order[0], state.exit_code, state.reason, state.message) == (1, 2, 137, "OOMKilled", "x")
    assert "exit code 137 (OOMKilled): x" in state.describe()


def test_job_state_reads_finish_and_failed_indexes():
    body = {"metadata": {"name": "x-score", "labels": {"app.kubernetes.io/component": "scoring"}},
            "spec": {"suspend": True},
            "status": {"failedIndexes": "1,3-4", "conditions": [
                {"type": "Suspended", "status": "True"}, {"type": "Failed", "status": "True", "reason": "FailedIndexes"}]}}
    state = job_state(body)
    assert state.finished == "Failed" and state.failed_indexes == {1, 3, 4} and state.suspended


def test_each_shard_counts_once_its_last_attempt():
    pods = [pod(0, "Failed", 137, report(2)), pod(0, "Failed", 1, "log tail", attempt=1),
            pod(0, "Succeeded", 0, report(5), attempt=2), pod(1, "Failed", 1, report(1)), pod(1, "Running", attempt=1)]
    judged = shards(pods, 2)
    assert [s.state for s in judged] == ["succeeded", "active"]
    assert judged[0].counts == Counts(5, 0, 5, 0) and judged[1].counts == Counts(1, 0, 1, 0)
    scoring = observe_scoring(spec(), pods, None, 10)
    assert scoring.counts == Counts(6, 0, 6, 0) and (scoring.active, scoring.succeeded) == (1, 1)
    assert not scoring.complete and scoring.failure is None


def test_running_shards_count_their_progress_files():
    pods = [pod(0, "Running"), pod(1, "Failed", 137, report(4)), pod(1, "Running", attempt=1),
            pod(2, "Succeeded", 0, report(3))]
    live = {0: Counts(2, 1, 20, 5), 1: Counts(1, 0, 1, 0), 2: Counts(1, 0, 1, 0)}
    judged = shards(pods, 3, live=live)
    assert judged[0].counts == live[0]  # running: what it published so far
    assert judged[1].counts == Counts(4, 0, 4, 0)  # the retry's file is behind the crashed attempt's report
    assert judged[2].counts == Counts(3, 0, 3, 0)  # done: its pod's report, not a file
    progress = {index: ShardProgress(counts) for index, counts in live.items()}  # files written before chunks
    scoring = observe_scoring(spec(errorThreshold=4, nodeCount=3), pods, None, 10, progress)
    assert scoring.failure[0] == "ErrorThresholdExceeded" and "5 failed items" in scoring.failure[1]


def test_progress_counts_each_chunk_once_wherever_it_was_scored():
    """Pod 0 died with chunk 0 partly committed and pod 1 took it over; pod 0's retry holds only
    chunk 20 now; index 2 was removed by a scale-down after it committed chunk 40. The indexes'
    sum misses pod 0's 3 mini-batches of chunk 0 and all of index 2's."""
    pods = [pod(0, "Failed", 137), pod(0, "Running", attempt=1), pod(1, "Running"), pod(2, "Succeeded", 0, report(5))]
    live = {0: ShardProgress(Counts(2, 0, 2, 0), {20: Counts(2, 0, 2, 0)}),
            1: ShardProgress(Counts(17, 0, 17, 0), {0: Counts(10, 0, 10, 0), 10: Counts(9, 1, 9, 4)}),
            2: ShardProgress(Counts(5, 0, 5, 0), {40: Counts(5, 0, 5, 0)})}
    job = JobState(name="r-score", component="score", completions=2)
    scoring = observe_scoring(spec(nodeCount=2), pods, job, 60, live)
    assert scoring.counts == Counts(26, 1, 26, 4)  # chunk 0 once, with pod 0's commits; index 2's chunk
    before = {0: ShardProgress(Counts(3, 0, 3, 0), {0: Counts(3, 0, 3, 0)})}  # chunk 0 before the takeover
    assert progress_total([before[0], live[1]]) == Counts(19, 1, 19, 4)  # the taker's count of it is the larger


@pytest.mark.parametrize("fields, pods, reason", [
    ({"errorThreshold": 1}, [pod(0, "Succeeded", 0, report(3, 2))], "ErrorThresholdExceeded"),
    ({"allowedFailedPercent": 10}, [pod(0, "Running"), pod(1, "Succeeded", 0, report(3, 2))], "ErrorThresholdExceeded"),
    ({}, [pod(1, "Failed", 3, report(0, 1, reason="alone"))], "ErrorThresholdExceeded"),
    ({}, [pod(0, "Failed", 2, report(0, reason="no score.py"))], "ConfigurationError"),
])
def test_verdicts(fields, pods, reason):
    failure = observe_scoring(spec(**fields), pods, None, 10).failure
    assert failure and failure[0] == reason


def test_crash_is_retried_until_the_job_gives_up():
    pods = [pod(0, "Failed", 139, "Segmentation fault")]
    assert observe_scoring(spec(), pods, None, 10).failure is None
    job = job_state({"metadata": {"name": "j"}, "status": {"failedIndexes": "0"}})
    reason, message = observe_scoring(spec(), pods, job, 10).failure
    assert reason == "RetriesExhausted" and "Segmentation fault" in message


def test_merge_outcomes():
    assert observe_merge([pod(0, "Running", component="merge")], None) == (None, "")
    assert observe_merge([pod(0, "Succeeded", 0, component="merge")], None) == ("Succeeded", "")
    outcome, message = observe_merge([pod(0, "Failed", 2, '{"reason": "no plan"}', component="merge")], None)
    assert outcome == "Failed" and "no plan" in message


def test_phase_conditions_follow_the_conventions():
    status = with_phase({}, "Planning", "Planning", "listing", 1, at="t1")
    assert status["startTime"] == "t1" and status["observedGeneration"] == 1
    status = with_phase(status, "Running", "Scoring", "scoring", 1, at="t2")
    running = status["conditions"][0]
    assert running == {"type": "Running", "status": "True", "reason": "Scoring", "message": "scoring",
                       "lastTransitionTime": "t1", "observedGeneration": 1}  # no flip, no new time
    status = with_phase(status, "Succeeded", "Succeeded", "done", 1, at="t3")
    by_type = {c["type"]: c for c in status["conditions"]}
    assert by_type["Running"]["status"] == "False" and by_type["Running"]["lastTransitionTime"] == "t3"
    assert by_type["Succeeded"]["status"] == "True" and status["completionTime"] == "t3"
    assert status["startTime"] == "t1"
    assert by_type["Reconciling"]["status"] == "False" and "Stalled" not in by_type


def kstatus(status: dict, generation: int) -> str:
    """kstatus' reading of a custom resource (sigs.k8s.io/cli-utils/pkg/kstatus, its generic rules)."""
    conditions = {c["type"]: c["status"] for c in status.get("conditions") or []}
    if status.get("observedGeneration") != generation:
        return "InProgress"
    if conditions.get("Stalled") == "True":
        return "Failed"
    return "InProgress" if conditions.get("Reconciling") == "True" else "Current"


def test_kstatus_reads_progress_and_the_end():
    status = with_phase({}, "Pending", "WaitingForSecret", "no secret", 1)
    assert kstatus(status, 1) == "InProgress"
    for phase in ("Planning", "Running", "Merging"):
        status = with_phase(status, phase, phase, phase, 1)
        assert kstatus(status, 1) == "InProgress"
    assert kstatus(with_phase(status, "Succeeded", "Succeeded", "done", 1), 1) == "Current"
    failed = with_phase(status, "Failed", "ErrorThresholdExceeded", "3 failed items", 1)
    assert kstatus(failed, 1) == "Failed" and kstatus(failed, 2) == "InProgress"


def test_progress_and_spec_refusal():
    status = with_progress({}, Counts(800, 12, 7990, 30), 1000, 2, 1, 0, 4)
    assert status["progressText"] == "812/1000" and status["nodesText"] == "2/4"
    assert status["progress"] == {"miniBatches": {"succeeded": 800, "failed": 12, "total": 1000},
                                  "items": {"succeeded": 7990, "failed": 30}}
    refused = with_spec_check(status, "no", 3, at="t")
    assert refused["conditions"][0]["type"] == "SpecChangeRefused" and refused["observedGeneration"] == 3
    assert with_spec_check(refused, None, 4)["conditions"] == []


def test_cli_options():
    args = parser().parse_args(["-n", "a", "--namespace", "b", "--peering", "p", "--liveness",
                                "http://0.0.0.0:8081/healthz", "--metrics-port", "8080", "--log-format", "json"])
    assert args.namespace == ["a", "b"] and args.peering == "p" and args.metrics_port == 8080
    assert args.log_format == "json" and not args.standalone
    with pytest.raises(SystemExit):
        parser().parse_args(["--standalone", "--peering", "p"])
    with pytest.raises(SystemExit):
        parser().parse_args(["-n", "a", "--all-namespaces"])


def test_replicas_of_one_peering_never_tie():
    args = parser().parse_args(["--peering", "p", "-n", "a"])
    priorities = {run_options(args)["priority"] for _ in range(20)}
    assert len(priorities) > 1  # kopf freezes every replica of equal priority
    assert run_options(args) | {"priority": 0} == {"clusterwide": False, "namespaces": ["a"], "standalone": None,
                                                 "liveness_endpoint": None, "peering_name": "p", "priority": 0}
    assert run_options(parser().parse_args(["--peering", "p", "--priority", "7"]))["priority"] == 7
    assert run_options(parser().parse_args(["--standalone", "-A"])) == {
        "clusterwide": True, "namespaces": [], "standalone": True, "liveness_endpoint": None}


def test_throughput_is_the_items_over_the_time_since_the_start():
    from datetime import datetime, timezone

    from parallelrun.operator.jobs.status import with_throughput

    status = with_progress({"startTime": "2026-01-01T00:00:00Z"}, Counts(3, 1, 40, 10), 4, 0, 2, 0, 2)
    assert with_throughput(status, datetime(2026, 1, 1, 0, 0, 20, tzinfo=timezone.utc))["itemsPerSecond"] == 2.5
    assert with_throughput(status, datetime(2026, 1, 1, 0, 0, 0, tzinfo=timezone.utc))["itemsPerSecond"] == 0.0
    assert "itemsPerSecond" not in with_throughput({"progress": {}}, datetime.now(timezone.utc))
