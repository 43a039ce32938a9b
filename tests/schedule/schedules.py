"""Test PipelineSchedules: a small valid pipeline template and a resource around it."""

from __future__ import annotations

from typing import Any

API_VERSION = "parallelrun.dev/v1alpha1"

PIPELINE_SPEC = {
    "parameters": {"day": {"type": "string", "default": "today"}},
    "workdir": "/tmp/work/",
    "steps": [{"name": "report", "container": {
        "image": "busybox", "command": ["sh", "-c", "echo ${{schedule.scheduledTime}} ${{parameters.day}}"]}}],
}


def schedule(name: str = "nightly", *, template_spec: dict | None = None, **spec: Any) -> dict:
    """A valid PipelineSchedule on `*/1 * * * *` by default; keyword arguments set spec fields (None removes)."""
    body: dict = {"schedule": {"cron": "* * * * *"}, "template": {"spec": template_spec or PIPELINE_SPEC}}
    body.update(spec)
    body = {k: v for k, v in body.items() if v is not None}
    return {"apiVersion": API_VERSION, "kind": "PipelineSchedule", "metadata": {"name": name, "namespace": "ns"},
            "spec": body}


def data_template(workdir: str = "/tmp/work/") -> dict:
    """A PipelineRun spec that scores the files of ${{trigger.manifest}}."""
    return {"workdir": workdir, "steps": [{"name": "score", "container": {
        "image": "busybox", "command": ["cat", "${{trigger.manifest}}"]}}]}
