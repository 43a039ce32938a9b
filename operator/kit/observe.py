"""What the operator keeps of the pods and Jobs it made (kopf's indexes): small, immutable states."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Literal

from parallelrun.runner.accounting import Counts
from parallelrun.runner.api import LABEL_COMPONENT
from parallelrun.runner.records import TerminationMessage

from .pods import CONTAINER

COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"
# A Job and its pods are watched apart: a failed Job's pods, which say why it failed, may be seen this much later.
POD_REPORT_SECONDS = 3.0
_MESSAGE_TAIL = 600  # characters of a pod's log tail quoted in a status message

PodPhase = Literal["Pending", "Running", "Succeeded", "Failed", "Unknown"]


@dataclass(frozen=True)
class PodState:
    """What the operator needs of one pod (kept in kopf's index: small and immutable)."""

    name: str
    component: str
    index: int | None
    order: tuple  # later attempts of an index sort last
    phase: PodPhase
    exit_code: int | None = None
    reason: str | None = None  # the container's, e.g. OOMKilled, or the pod's, e.g. Evicted
    message: str | None = None  # the termination message: the runner's JSON, or a log tail

    @property
    def terminated(self) -> bool:
        return self.phase in ("Succeeded", "Failed")

    @property
    def report(self) -> TerminationMessage | None:
        """The runner's termination message, if that is what the pod left (else a log tail)."""
        return TerminationMessage.from_text(self.message)

    @property
    def counts(self) -> Counts | None:
        report = self.report
        return report.counts if report else None

    def describe(self) -> str:
        """Why this pod ended, for a status message."""
        report = self.report
        detail = report.reason if report is not None else (self.message or "").strip()[-_MESSAGE_TAIL:]
        code = f"exit code {self.exit_code}" if self.exit_code is not None else "no exit code"
        head = f"pod {self.name} ended with {code}" + (f" ({self.reason})" if self.reason else "")
        return f"{head}: {detail}" if detail else head


def pod_state(pod: Mapping) -> PodState:
    meta, status = pod.get("metadata", {}), pod.get("status") or {}
    labels, annotations = meta.get("labels") or {}, meta.get("annotations") or {}
    raw_index = labels.get(COMPLETION_INDEX, annotations.get(COMPLETION_INDEX))
    failures = annotations.get("batch.kubernetes.io/job-index-failure-count", "0")
    terminated: dict = {}
    for container in status.get("containerStatuses") or []:
        if container.get("name") == CONTAINER:
            terminated = (container.get("state") or {}).get("terminated") or {}
    return PodState(
        name=meta.get("name", ""),
        component=labels.get(LABEL_COMPONENT, ""),
        index=int(raw_index) if raw_index is not None and str(raw_index).isdigit() else None,
        order=(int(failures) if str(failures).isdigit() else 0, meta.get("creationTimestamp") or "", meta.get("name",
                                                                                                              "")),
        phase=status.get("phase") or "Pending",
        exit_code=terminated.get("exitCode"),
        reason=terminated.get("reason") or status.get("reason"),
        message=terminated.get("message") or status.get("message"),
    )


@dataclass(frozen=True)
class JobState:
    name: str
    component: str
    finished: Literal["Complete", "Failed"] | None = None  # while running: None
    reason: str = ""
    message: str = ""
    failed_indexes: frozenset[int] = frozenset()
    suspended: bool = False
    completions: int | None = None


def job_state(job: Mapping) -> JobState:
    meta, spec, status = job.get("metadata", {}), job.get("spec") or {}, job.get("status") or {}
    finished, reason, message = None, "", ""
    for condition in status.get("conditions") or []:
        if condition.get("type") in ("Complete", "Failed") and condition.get("status") == "True":
            finished, reason, message = condition["type"], condition.get("reason", ""), condition.get("message", "")
    return JobState(name=meta.get("name", ""), component=(meta.get("labels") or {}).get(LABEL_COMPONENT, ""),
                    finished=finished, reason=reason, message=message,
                    failed_indexes=frozenset(_parse_indexes(status.get("failedIndexes") or "")),
                    suspended=bool(spec.get("suspend")), completions=spec.get("completions"))


def _parse_indexes(text: str) -> Iterable[int]:
    """Kubernetes' compressed index lists: "1,3-5" → 1, 3, 4, 5."""
    for part in filter(None, text.split(",")):
        first, _, last = part.partition("-")
        yield from range(int(first), int(last or first) + 1)
