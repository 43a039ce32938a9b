"""What the chart and the README tell a user to run works on a cluster.

Every `kubectl apply -f FILE` they name (NOTES, README.md, the chart's README, examples'
README and the examples' own comments) applies resources the operator accepts on a
cluster as it ships (no --local-storage); every `helm install ... --set` they show
passes the chart's values schema; `helm show readme` documents the values a cluster
needs set.
"""

from __future__ import annotations

import re
import subprocess
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml
from chart_paths import CHART, NAMESPACE, RELEASE, REPO

from parallelrun.operator.jobs.manifests import cluster_errors as job_errors
from parallelrun.operator.pipelines.manifests import cluster_errors as pipeline_errors
from parallelrun.operator.schedules.controller import cluster_checked
from parallelrun.runner.pipelines.spec import load_pipeline
from parallelrun.runner.schedules.runs import build_run
from parallelrun.runner.schedules.spec import ScheduleSpecError, load_schedule
from parallelrun.runner.spec import load_spec

DOCS = [CHART / "templates" / "NOTES.txt", REPO / "README.md", CHART / "README.md", REPO / "examples" / "README.md",
        *sorted(REPO.glob("examples/**/*.yaml"))]
APPLY = re.compile(r"kubectl apply -f (\S+\.yaml)")
JOB_IMAGE = "registry.example/parallelrun:0.1.0"  # the chart always gives the operator a job image


def applied_files() -> dict[str, Path]:
    found = {}
    for doc in DOCS:
        for name in APPLY.findall(doc.read_text()):
            found[f"{doc.relative_to(REPO)}: {name}"] = REPO / name
    return found


APPLIED = applied_files()


def cluster_problems(resource: dict) -> list[str]:
    """What the operator, as the chart runs it, says of `resource` before running anything."""
    kind = resource["kind"]
    if kind == "BatchInferenceJob":
        return job_errors(load_spec(resource), JOB_IMAGE)
    if kind == "PipelineRun":
        return pipeline_errors(load_pipeline(resource), JOB_IMAGE)
    schedule = load_schedule(resource)
    try:
        cluster_checked(schedule, local_storage=False)
    except ScheduleSpecError as e:
        return e.errors
    run = build_run(schedule, "run", datetime(2000, 1, 1, tzinfo=timezone.utc), "schedule",
                    manifest="az://in/manifest.txt" if schedule.uses_manifest else None)
    return pipeline_errors(load_pipeline(run), JOB_IMAGE)  # each run it makes


def test_the_docs_tell_to_apply_something():
    assert any(key.startswith("charts/parallelrun/templates/NOTES.txt") for key in APPLIED)


@pytest.mark.parametrize("path", APPLIED.values(), ids=APPLIED.keys())
def test_every_applied_file_runs_on_a_cluster(path: Path):
    resources = [d for d in yaml.safe_load_all(path.read_text())
                 if isinstance(d, dict) and str(d.get("apiVersion", "")).startswith("parallelrun.dev/")]
    assert resources, f"{path} holds no parallelrun resource"
    for resource in resources:
        assert cluster_problems(resource) == [], resource["metadata"]["name"]


def helm_sets(text: str) -> list[list[str]]:
    """The --set arguments of each `helm install` command in `text` (continued lines joined)."""
    commands = re.findall(r"helm install (?:[^\n]*\\\n)*[^\n]*", text)
    return [re.findall(r"--set\s+\"?([^\s\"]+)\"?", command) for command in commands]


@pytest.mark.parametrize("doc", [REPO / "README.md", CHART / "README.md"], ids=lambda p: str(p.relative_to(REPO)))
def test_every_helm_install_shown_passes_the_values_schema(helm: Path, doc: Path):
    commands = helm_sets(doc.read_text())
    assert commands and all(commands), f"{doc} shows no helm install with --set"
    for sets in commands:
        values = [v.replace("$REGISTRY", "registry.example.com/ml") for v in sets]
        result = subprocess.run([str(helm), "template", RELEASE, str(CHART), "--namespace", NAMESPACE,
                                 *[a for v in values for a in ("--set", v)]], capture_output=True, text=True,
                                timeout=120)
        assert result.returncode == 0, result.stderr
        image = next(d for d in yaml.safe_load_all(result.stdout) if d and d["kind"] == "Deployment")
        assert image["spec"]["template"]["spec"]["containers"][0]["image"] == "registry.example.com/ml/parallelrun:0.1.0"


def test_helm_show_readme_documents_what_a_cluster_needs(helm: Path):
    readme = subprocess.run([str(helm), "show", "readme", str(CHART)], capture_output=True, text=True,
                            timeout=60, check=True).stdout
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    rows = [line.split("|")[1] for line in readme.splitlines() if line.startswith("| `")]  # the Values table
    named = {name for cell in rows for name in re.findall(r"`([^`]+)`", cell)}
    for key in named:
        node = values
        for part in key.split("."):
            assert isinstance(node, dict) and part in node, f"the chart README names {key}, which values.yaml lacks"
            node = node[part]
    assert {"image.repository", "image.tag", "rbac.secretNamespaces", "rbac.secretsInAllNamespaces"} <= named
    assert "docker push" in readme
