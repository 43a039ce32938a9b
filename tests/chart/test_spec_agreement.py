"""The CRD (OpenAPI schema + CEL rules) and the runner's load_spec judge jobs alike.

A job the API server accepts must run in local mode and the other way round; a job
both reject must be blamed on the same field. PipelineSchedules are judged by
load_schedule (which checks their template as the PipelineRun it becomes) the same way.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from chart_paths import REPO
from crd_validation import CustomResourceValidator
from resource_cases import INVALID_JOBS, INVALID_SCHEDULES, VALID_JOBS, VALID_SCHEDULES, Invalid

from parallelrun.runner.schedules.spec import load_schedule
from parallelrun.runner.spec import SpecError, load_spec

# Cases the API server rejects but load_spec accepts: fix one side, then drop the entry.
KNOWN_DISAGREEMENTS: dict[str, str] = {}  # case name → why; empty: load_spec and the CRD agree


def load(resource: dict, base_dir: str | None = None) -> None:
    """The runner's judgement: load_spec for a BatchInferenceJob, load_schedule for a PipelineSchedule."""
    if resource["kind"] == "BatchInferenceJob":
        load_spec(resource, base_dir=base_dir)
    else:
        load_schedule(resource, base_dir=base_dir)


def related(path: str, other: str) -> bool:
    """One path is the other or lies inside it, e.g. spec.code and spec.code.configMap."""
    short, long = sorted((path, other), key=len)
    return long == short or long.startswith((short + ".", short + "["))


def example_resources() -> list[pytest.param]:
    params = []
    for path in sorted(REPO.glob("examples/*/*.yaml")):
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") in ("BatchInferenceJob", "PipelineSchedule"):
                params.append(pytest.param(doc, path.parent, id=f"{path.relative_to(REPO)}:{doc['kind']}"))
    return params or [pytest.param(None, None, marks=pytest.mark.skip("no examples yet"), id="none")]


ACCEPTED = ([pytest.param(r, None, id=f"job: {name}") for name, r in VALID_JOBS.items()]
            + [pytest.param(r, None, id=f"schedule: {name}") for name, r in VALID_SCHEDULES.items()]
            + example_resources())
REJECTED = [pytest.param(case, id=case.name, marks=[pytest.mark.xfail(reason=KNOWN_DISAGREEMENTS[case.name],
                                                                         strict=True)]
                         if case.name in KNOWN_DISAGREEMENTS else [])
            for case in INVALID_JOBS + INVALID_SCHEDULES]


@pytest.mark.parametrize(("resource", "base_dir"), ACCEPTED)
def test_both_accept(crd_validator: CustomResourceValidator, resource: dict, base_dir: Path | None) -> None:
    assert [str(v) for v in crd_validator.validate(resource)] == []
    load(resource, base_dir=str(base_dir) if base_dir else None)


@pytest.mark.parametrize("case", REJECTED)
def test_both_reject_the_same_field(crd_validator: CustomResourceValidator, case: Invalid) -> None:
    assert any(v.path == case.path for v in crd_validator.validate(case.resource))
    with pytest.raises(SpecError) as raised:
        load(case.resource)
    blamed = [error.split(": ", 1)[0] for error in raised.value.errors]
    assert any(related(path, case.path) for path in blamed), f"CRD blames {case.path}, the runner {blamed}"
