"""The API vocabulary of parallelrun's custom resources: every name the cluster sees, once.

The operator, the CRD generator, the chart's tests and the command line take their
group, version, kinds, plurals, short names, labels and annotations from here, so a
name cannot drift between the resource a user applies and the code that serves it.
"""

from __future__ import annotations

from dataclasses import dataclass

GROUP = "parallelrun.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"


@dataclass(frozen=True)
class Kind:
    """One custom resource kind as the API server knows it."""

    kind: str
    plural: str
    short_name: str

    @property
    def singular(self) -> str:
        return self.kind.lower()

    @property
    def names(self) -> tuple[str, ...]:
        """Every name kubectl accepts for the kind."""
        return self.short_name, self.singular, self.plural


BATCH_INFERENCE_JOB = Kind("BatchInferenceJob", "batchinferencejobs", "bij")
PIPELINE_RUN = Kind("PipelineRun", "pipelineruns", "prun")
PIPELINE_SCHEDULE = Kind("PipelineSchedule", "pipelineschedules", "psched")
KINDS = (BATCH_INFERENCE_JOB, PIPELINE_RUN, PIPELINE_SCHEDULE)
COMPONENT = "Component"  # a file, not a resource: AML v2's command component

# Labels on every child the operator makes (and the watch selects on).
LABEL_APP_NAME = "app.kubernetes.io/name"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
LABEL_COMPONENT = "app.kubernetes.io/component"
APP_NAME = "parallelrun"
MANAGED_BY = "parallelrun-operator"

# A BatchInferenceJob's children.
LABEL_JOB = f"{GROUP}/batchinferencejob"
LABEL_JOB_UID = f"{GROUP}/batchinferencejob-uid"
ANNOTATION_RUN_ID = f"{GROUP}/run-id"
ANNOTATION_SPEC_HASH = f"{GROUP}/spec-hash"

# Kueue: the LocalQueue a Job waits in (created suspended; Kueue unsuspends it once admitted).
LABEL_KUEUE_QUEUE = "kueue.x-k8s.io/queue-name"

# A PipelineRun's children.
LABEL_RUN = f"{GROUP}/pipelinerun"
LABEL_RUN_UID = f"{GROUP}/pipelinerun-uid"
LABEL_STEP = f"{GROUP}/step"
ANNOTATION_FINGERPRINT = f"{GROUP}/fingerprint"
ANNOTATION_OUTPUTS = f"{GROUP}/outputs"

# A PipelineSchedule's runs, and the schedule's own annotation.
LABEL_SCHEDULE = f"{GROUP}/schedule"
LABEL_TRIGGER = f"{GROUP}/trigger"
ANNOTATION_SCHEDULED_TIME = f"{GROUP}/scheduled-time"
ANNOTATION_WATERMARK = f"{GROUP}/watermark"  # on a data-arrival run: the watermark once its files are handed over
ANNOTATION_RUN_NOW = f"{GROUP}/run-now"

FINALIZER = f"{GROUP}/operator"  # kopf's; a schedule creates its runs with it
ANNOTATION_PREFIX = GROUP  # kopf's progress and diff-base annotations
