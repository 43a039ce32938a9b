"""Valid and invalid BatchInferenceJob, PipelineSchedule and PipelineRun resources for the schema tests.

Every invalid resource is a valid one with one change, and names the path and the
words of the violation it must cause, so a rejection for any other reason fails.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

API_VERSION = "parallelrun.dev/v1alpha1"
DELETE = object()


def job(**spec: Any) -> dict:
    """A valid tabular BatchInferenceJob; keyword arguments override spec fields."""
    base = {
        "input": {"uri": "az://data/iris/", "type": "tabular", "format": "parquet"},
        "code": {"uri": "az://code/iris/", "entryScript": "score.py"},
        "output": {"uri": "az://out/iris/"},
    }
    return {"apiVersion": API_VERSION, "kind": "BatchInferenceJob",
            "metadata": {"name": "iris"}, "spec": {**base, **spec}}


def files_job(**spec: Any) -> dict:
    return job(input={"uri": "az://data/digits/", "type": "files", "pattern": "*.png"}, **spec)


TEMPLATE_SPEC = {"workdir": "az://pipelines/nightly/",
                 "steps": [{"name": "score", "batchInference": job()["spec"]}]}


def schedule(**spec: Any) -> dict:
    """A valid PipelineSchedule, by default on cron; keyword arguments override spec fields."""
    base = {"template": {"spec": TEMPLATE_SPEC}, "schedule": {"cron": "0 2 * * *"}}
    return {"apiVersion": API_VERSION, "kind": "PipelineSchedule",
            "metadata": {"name": "nightly"}, "spec": {**base, **spec}}


def changed(resource: dict, path: str, value: Any) -> dict:
    """A copy of resource with the dotted path set to value, or removed with DELETE."""
    result = copy.deepcopy(resource)
    *parents, last = path.split(".")
    node = result
    for name in parents:
        node = node[name]
    if value is DELETE:
        del node[last]
    else:
        node[last] = value
    return result


@dataclass(frozen=True)
class Invalid:
    name: str
    resource: dict
    path: str  # where the violation is reported
    words: str  # part of its message

    def __str__(self) -> str:
        return self.name


FULL_JOB = job(
    input={"uri": "az://data/iris/", "type": "tabular", "format": "csv", "pattern": "*.csv",
           "options": {"delimiter": ";", "header": True}},
    sideInputs=[{"name": "labels", "uri": "az://data/labels.json"},
                {"name": "VOCAB_2", "uri": "az://data/vocab.txt"}],
    model={"uri": "az://models/iris/"},
    code={"configMap": "iris-code", "entryScript": "score.py"},
    arguments=["--model_name", "iris"],
    miniBatchSize="1.5 MiB",
    partitionKeys=["species"],
    errorThreshold=10,
    miniBatchErrorThreshold=2,
    allowedFailedPercent=5,
    output={"uri": "az://out/iris/", "action": "appendRow", "fileName": "scores.csv", "format": "csv"},
    nodeCount=4,
    processCountPerNode=2,
    runInvocationTimeout=120,
    runMaxTry=5,
    loggingLevel="DEBUG",
    environment={
        "image": "registry.example/scorer:1.0",
        "env": [{"name": "OMP_NUM_THREADS", "value": "1"}],
        "envFrom": [{"configMapRef": {"name": "scorer-env"}}],
        "resources": {"requests": {"cpu": "2", "memory": "4Gi"}, "limits": {"memory": "8Gi"}},
        "nodeSelector": {"pool": "scoring"},
        "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "serviceAccountName": "scorer",
        "gpu": {"count": 2, "resourceName": "nvidia.com/gpu", "product": "NVIDIA-A100-SXM4-80GB"},
    },
    storage={"secretRef": {"name": "blob-creds"}},
    allowReuse=True,
)

VALID_JOBS = {
    "tabular parquet, defaults": job(),
    "tabular, size in bytes": job(miniBatchSize="1MB"),
    "tabular, rows": job(miniBatchSize=5000),
    "tabular jsonl, fractional size": job(input={"uri": "/data/x", "type": "tabular", "format": "jsonl"},
                                          miniBatchSize="0.5GB"),
    "files, count": files_job(miniBatchSize=10),
    "files, defaults": files_job(),
    "parquet dataset": job(output={"uri": "az://out/", "format": "parquet", "fileName": "scored", "layout": "dataset"}),
    "files from a manifest": job(input={"manifest": "az://data/incoming/manifest.txt", "type": "files"}),
    "tabular from a manifest": job(input={"manifest": "/data/lists/iris.txt", "type": "tabular", "format": "csv"}),
    "code baked into the image": job(code={"entryScript": "/app/score.py"}),
    "thresholds ignore all": job(errorThreshold=-1, miniBatchErrorThreshold=-1, allowedFailedPercent=-1),
    "thresholds fail on first": job(errorThreshold=0, miniBatchErrorThreshold=0, allowedFailedPercent=0),
    "summary only": job(output={"uri": "file:///tmp/out", "action": "summaryOnly"}),
    "an MLflow model, no code": changed(job(model={"uri": "az://models/iris/"}), "spec.code", DELETE),
    "many results per item, a repair": job(output={"uri": "az://out/", "resultsPerItem": "many"}, retryFailed=True),
    "every field": FULL_JOB,
    "the builtin OpenAI scorer": job(
        input={"uri": "az://data/batch/", "type": "tabular", "format": "jsonl"}, miniBatchSize=20,
        code={"builtin": "openai", "openai": {
            "endpoint": "https://aoai.example/openai/v1", "apiKey": {"secretKeyRef": {"name": "aoai", "key": "key"}},
            "model": "gpt-4o-mini", "requestsPerMinute": 600, "tokensPerMinute": 100000, "requestTimeout": 60,
            "maxRetries": 3}},
        output={"uri": "az://out/batch/", "format": "jsonl", "fileName": "results.jsonl"}),
    "the builtin OpenAI scorer, least fields": job(
        input={"uri": "/data/batch.jsonl", "type": "tabular", "format": "jsonl"},
        code={"builtin": "openai", "openai": {"endpoint": "http://localhost:8000/v1"}}),
}

VALID_SCHEDULES = {
    "cron": schedule(),
    "cron macro": schedule(schedule={"cron": "@daily", "timeZone": "Europe/Berlin"}),
    "weekly recurrence": schedule(schedule={
        "recurrence": {"frequency": "Week", "interval": 1, "weekDays": ["Monday", "Thursday"], "hours": [2, 14],
                       "minutes": [0, 30]},
        "startTime": "2025-01-06T00:00:00", "endTime": "2027-01-01T00:00:00Z", "timeZone": "Europe/Berlin"}),
    "hourly recurrence": schedule(schedule={"recurrence": {"frequency": "Hour", "interval": 2, "minutes": [15]}}),
    "monthly on the last day": schedule(schedule={"recurrence": {"frequency": "Month", "monthDays": [1, -1]}}),
    "trigger only": changed(schedule(trigger={"dataArrival": {"uri": "az://data/incoming/", "pattern": "*.parquet",
                                                              "settleSeconds": 30}}), "spec.schedule", DELETE),
    "run-now only": changed(schedule(), "spec.schedule", DELETE),
    "every field": schedule(
        suspend=True, concurrencyPolicy="Replace", startingDeadlineSeconds=300, missedRuns="RunAll", maxMissedRuns=5,
        successfulRunsHistoryLimit=10, failedRunsHistoryLimit=5,
        template={"metadata": {"labels": {"team": "ml"}, "annotations": {"owner": "ml@example.com"}},
                  "spec": {**TEMPLATE_SPEC, "parameters": {"day": {"type": "string", "default": "today"}}}}),
}

INVALID_JOBS = [
    Invalid("tabular without format", changed(job(), "spec.input.format", DELETE),
            "spec.input.format", "required when input.type is tabular"),
    Invalid("format with files", changed(files_job(), "spec.input.format", "csv"),
            "spec.input.format", "applies only to input.type tabular"),
    Invalid("unknown input type", changed(job(), "spec.input.type", "images"), "spec.input.type", "Unsupported value"),
    Invalid("unknown input format", changed(job(), "spec.input.format", "xlsx"),
            "spec.input.format", "Unsupported value"),
    Invalid("no input uri", changed(job(), "spec.input.uri", DELETE), "spec.input.uri",
            "input.uri or input.manifest is required"),
    Invalid("input uri and manifest", changed(job(), "spec.input.manifest", "az://data/list.txt"),
            "spec.input.manifest", "exclusive"),
    Invalid("dataset layout of csv output", job(output={"uri": "az://out/", "format": "csv", "layout": "dataset"}),
            "spec.output.layout", "dataset is for parquet output"),
    Invalid("manifest with a pattern", changed(files_job(), "spec.input", {
        "manifest": "az://data/list.txt", "type": "files", "pattern": "*.png"}), "spec.input.pattern",
            "a manifest lists exactly the files"),
    Invalid("no input", changed(job(), "spec.input", DELETE), "spec.input", "Required"),
    Invalid("partitionKeys with files", files_job(partitionKeys=["label"]),
            "spec.partitionKeys", "only to input.type tabular"),
    Invalid("duplicate partitionKeys", job(partitionKeys=["a", "a"]), "spec.partitionKeys[1]", "Duplicate"),
    Invalid("errorThreshold below -1", job(errorThreshold=-2), "spec.errorThreshold", "minimum"),
    Invalid("miniBatchErrorThreshold below -1", job(miniBatchErrorThreshold=-2),
            "spec.miniBatchErrorThreshold", "minimum"),
    Invalid("allowedFailedPercent above 100", job(allowedFailedPercent=101), "spec.allowedFailedPercent", "maximum"),
    Invalid("allowedFailedPercent below -1", job(allowedFailedPercent=-2), "spec.allowedFailedPercent", "minimum"),
    Invalid("allowedFailedPercent fraction", job(allowedFailedPercent=2.5), "spec.allowedFailedPercent",
            "is not of type"),
    Invalid("runMaxTry 0", job(runMaxTry=0), "spec.runMaxTry", "minimum"),
    Invalid("nodeCount 0", job(nodeCount=0), "spec.nodeCount", "minimum"),
    Invalid("processCountPerNode 0", job(processCountPerNode=0), "spec.processCountPerNode", "minimum"),
    Invalid("runInvocationTimeout 0", job(runInvocationTimeout=0), "spec.runInvocationTimeout", "minimum"),
    Invalid("nodeCount as text", job(nodeCount="4"), "spec.nodeCount", "is not of type"),
    Invalid("miniBatchSize with an unknown unit", job(miniBatchSize="1XB"), "spec.miniBatchSize", "is not a size"),
    Invalid("miniBatchSize with no unit", job(miniBatchSize="100"), "spec.miniBatchSize", "is not a size"),
    Invalid("miniBatchSize 0", job(miniBatchSize=0), "spec.miniBatchSize", "at least 1"),
    Invalid("miniBatchSize 0MB", job(miniBatchSize="0MB"), "spec.miniBatchSize", "greater than zero"),
    Invalid("miniBatchSize fraction", job(miniBatchSize=1.5), "spec.miniBatchSize", "is not of type"),
    Invalid("miniBatchSize in bytes for files", files_job(miniBatchSize="1MB"),
            "spec.miniBatchSize", "integer count of files"),
    Invalid("argument not a string", job(arguments=["--batch", 32]), "spec.arguments[1]", "is not of type"),
    Invalid("no code", changed(job(), "spec.code", DELETE), "spec.code", "code is required, unless model"),
    Invalid("no entryScript", job(code={"uri": "az://code/iris/"}), "spec.code.entryScript", "Required"),
    Invalid("code uri and configMap", job(code={"uri": "az://code/", "configMap": "c", "entryScript": "s.py"}),
            "spec.code.configMap", "exclusive"),
    Invalid("entryScript outside the code folder", job(code={"uri": "az://code/", "entryScript": "../evil.py"}),
            "spec.code.entryScript", "inside the code folder"),
    Invalid("absolute entryScript with a code uri", job(code={"uri": "az://code/", "entryScript": "/etc/evil.py"}),
            "spec.code.entryScript", "relative to code.uri"),
    Invalid("entryScript not a .py file", job(code={"uri": "az://code/", "entryScript": "score.sh"}),
            "spec.code.entryScript", "does not match"),
    Invalid("initTimeout 0", job(initTimeout=0), "spec.initTimeout", "minimum"),
    Invalid("no output", changed(job(), "spec.output", DELETE), "spec.output", "Required"),
    Invalid("no output uri", job(output={"action": "appendRow"}), "spec.output.uri", "Required"),
    Invalid("unknown output action", job(output={"uri": "/out", "action": "append"}),
            "spec.output.action", "Unsupported value"),
    Invalid("unknown output format", job(output={"uri": "/out", "format": "xml"}),
            "spec.output.format", "Unsupported value"),
    Invalid("output fileName with a folder", job(output={"uri": "/out", "fileName": "a/b.txt"}),
            "spec.output.fileName", "does not match"),
    Invalid("output fileName like parallelrun's own", job(output={"uri": "/out", "fileName": "_summary.txt"}),
            "spec.output.fileName", "does not match"),
    Invalid("unknown loggingLevel", job(loggingLevel="VERBOSE"), "spec.loggingLevel", "Unsupported value"),
    Invalid("gpu count 0", job(environment={"gpu": {"count": 0}}), "spec.environment.gpu.count", "minimum"),
    Invalid("gpu without count", job(environment={"gpu": {"product": "NVIDIA-A100-SXM4-80GB"}}),
            "spec.environment.gpu.count", "Required"),
    Invalid("side input without uri", job(sideInputs=[{"name": "labels"}]), "spec.sideInputs[0].uri", "Required"),
    Invalid("side input name not a variable name", job(sideInputs=[{"name": "my-labels", "uri": "/l"}]),
            "spec.sideInputs[0].name", "does not match"),
    Invalid("duplicate side input names", job(sideInputs=[{"name": "a", "uri": "/a"}, {"name": "a", "uri": "/b"}]),
            "spec.sideInputs[1]", "Duplicate"),
    Invalid("storage secretRef without name", job(storage={"secretRef": {}}),
            "spec.storage.secretRef.name", "Required"),
    Invalid("unknown field", job(nodes=4), "spec.nodes", "unknown field"),
    *[Invalid(name, changed(job(input={"uri": "/data/b.jsonl", "type": "tabular", "format": "jsonl"},
                                code={"builtin": "openai", "openai": {"endpoint": "http://localhost:8000/v1"}}),
                            path, value), blamed or path, words)
      for name, path, value, words, blamed in [
          ("unknown builtin", "spec.code.builtin", "anthropic", "Unsupported value", None),
          ("builtin with an entryScript", "spec.code.entryScript", "score.py", "remove entryScript", "spec.code.builtin"),
          ("builtin with a code uri", "spec.code.uri", "az://code/", "remove entryScript", "spec.code.builtin"),
          ("builtin without its settings", "spec.code.openai", DELETE, "give both or neither", None),
          ("openai endpoint not a URL", "spec.code.openai.endpoint", "localhost:8000", "does not match", None),
          ("openai endpoint missing", "spec.code.openai.endpoint", DELETE, "Required", None),
          ("openai requestsPerMinute 0", "spec.code.openai.requestsPerMinute", 0, "minimum", None),
          ("openai key from both", "spec.code.openai.apiKey", {"env": "K", "secretKeyRef": {"name": "s", "key": "k"}},
           "either env or secretKeyRef", None),
          ("openai key secret without key", "spec.code.openai.apiKey", {"secretKeyRef": {"name": "s"}}, "Required",
           "spec.code.openai.apiKey.secretKeyRef.key"),
      ]],
    Invalid("misspelled field", job(minibatchSize=10), "spec.minibatchSize", "unknown field"),
]

INVALID_SCHEDULES = [
    Invalid("cron and recurrence", schedule(schedule={"cron": "@daily", "recurrence": {"frequency": "Day"}}),
            "spec.schedule", "exactly one"),
    Invalid("schedule without cron or recurrence", schedule(schedule={"timeZone": "UTC"}),
            "spec.schedule", "exactly one"),
    Invalid("cron with 3 fields", schedule(schedule={"cron": "0 2 *"}), "spec.schedule.cron", "does not match"),
    Invalid("unknown frequency", schedule(schedule={"recurrence": {"frequency": "Year"}}),
            "spec.schedule.recurrence.frequency", "Unsupported value"),
    Invalid("weekDays with frequency Day",
            schedule(schedule={"recurrence": {"frequency": "Day", "weekDays": ["Monday"]}}),
            "spec.schedule.recurrence.weekDays", "only to frequency Week"),
    Invalid("hours with frequency Hour",
            schedule(schedule={"recurrence": {"frequency": "Hour", "hours": [1]}}),
            "spec.schedule.recurrence.hours", "only to frequency Day, Week or Month"),
    Invalid("minutes with frequency Minute",
            schedule(schedule={"recurrence": {"frequency": "Minute", "minutes": [1]}}),
            "spec.schedule.recurrence.minutes", "only to frequency Hour, Day, Week or Month"),
    Invalid("monthDays with frequency Week",
            schedule(schedule={"recurrence": {"frequency": "Week", "monthDays": [1]}}),
            "spec.schedule.recurrence.monthDays", "only to frequency Month"),
    Invalid("hour 24", schedule(schedule={"recurrence": {"frequency": "Day", "hours": [24]}}),
            "spec.schedule.recurrence.hours[0]", "maximum"),
    Invalid("month day 0", schedule(schedule={"recurrence": {"frequency": "Month", "monthDays": [-2]}}),
            "spec.schedule.recurrence.monthDays[0]", "minimum"),
    Invalid("unknown week day",
            schedule(schedule={"recurrence": {"frequency": "Week", "weekDays": ["Funday"]}}),
            "spec.schedule.recurrence.weekDays[0]", "Unsupported value"),
    Invalid("interval 0", schedule(schedule={"recurrence": {"frequency": "Day", "interval": 0}}),
            "spec.schedule.recurrence.interval", "minimum"),
    Invalid("unknown concurrencyPolicy", schedule(concurrencyPolicy="Skip"),
            "spec.concurrencyPolicy", "Unsupported value"),
    Invalid("unknown missedRuns", schedule(missedRuns="All"), "spec.missedRuns", "Unsupported value"),
    Invalid("trigger without dataArrival", schedule(trigger={"uri": "/in"}), "spec.trigger.uri", "unknown field"),
    Invalid("poll interval 0", schedule(trigger={"dataArrival": {"uri": "/in", "pollIntervalSeconds": 0}}),
            "spec.trigger.dataArrival.pollIntervalSeconds", "minimum"),
    Invalid("negative history limit", schedule(successfulRunsHistoryLimit=-1),
            "spec.successfulRunsHistoryLimit", "minimum"),
    Invalid("no template", changed(schedule(), "spec.template", DELETE), "spec.template", "Required"),
    Invalid("old jobTemplate", changed(schedule(), "spec.jobTemplate", {"spec": job()["spec"]}),
            "spec.jobTemplate", "unknown field"),
    Invalid("template: no steps", changed(schedule(), "spec.template.spec", {"workdir": "/w/"}),
            "spec.template.spec.steps", "Required"),
    Invalid("template: unknown metadata field", changed(schedule(), "spec.template.metadata", {"name": "x"}),
            "spec.template.metadata.name", "unknown field"),
]


def pipeline_run(**spec: Any) -> dict:
    """A valid PipelineRun with one container step; keyword arguments override spec fields."""
    base = {"workdir": "az://pipelines/iris/",
            "steps": [{"name": "hello", "container": {"image": "busybox:1.36", "command": ["echo", "hello"]}}]}
    return {"apiVersion": API_VERSION, "kind": "PipelineRun", "metadata": {"name": "iris-retrain"},
            "spec": {**base, **spec}}


def container_step(name: str, **fields: Any) -> dict:
    return {"name": name, "container": {"command": ["echo", name]}, **fields}


def scoring_step(name: str = "score", **spec: Any) -> dict:
    return {"name": name, "batchInference": {**job()["spec"], **spec}}


DESIGN_PIPELINE_RUN = pipeline_run(  # DESIGN.md's example
    parameters={"scoringDate": {"type": "string", "default": "today"},
                "maxIter": {"type": "integer", "default": 500}},
    storage={"secretRef": {"name": "blob-creds"}},
    steps=[
        {"name": "train", "component": {"uri": "az://components/train-iris/1.2/component.yaml"},
         "inputs": {"data": "az://data/iris-train/", "max_iter": "${{parameters.maxIter}}"}},
        scoring_step(model={"uri": "${{steps.train.outputs.model}}"},
                     code={"configMap": "iris-code", "entryScript": "score.py"},
                     output={"uri": "${{run.workdir}}/score/", "format": "csv",
                             "fileName": "iris_${{parameters.scoringDate}}.csv"}),
        {"name": "publish", "dependsOn": ["score"],
         "container": {"image": "registry.example/publish:1", "command": [
             "python", "publish.py", "${{steps.score.outputs.output}}"]}},
    ],
    **{"finally": [{"name": "notify", "container": {"image": "busybox:1.36",
                                                    "command": ["sh", "-c", "echo ${{run.status}}"]}}]},
)

VALID_PIPELINE_RUNS = {
    "one container step": pipeline_run(),
    "DESIGN.md's example": DESIGN_PIPELINE_RUN,
    "every field": pipeline_run(
        parameters={"day": {"type": "string", "default": "today", "value": "2025-01-31", "description": "Day."},
                    "ratio": {"type": "number", "default": 0.5}, "dryRun": {"type": "boolean", "default": False}},
        steps=[
            container_step("a", retries=2, reuse=False, container={
                "image": "busybox:1.36", "command": ["sh", "-c"], "args": ["echo ${{parameters.day}}"],
                "env": [{"name": "DAY", "value": "${{parameters.day}}"}],
                "resources": {"requests": {"cpu": "100m"}, "limits": {"memory": "64Mi"}}}),
            {"name": "b", "dependsOn": ["a"], "component": {"configMap": "components", "key": "train.yaml"},
             "inputs": {"ratio": "${{parameters.ratio}}", "dry_run": True, "epochs": 3}},
            scoring_step("c", **FULL_JOB["spec"]),
        ],
        **{"finally": [container_step("report"), container_step("cleanup", dependsOn=["report"], reuse=True)]}),
    "integer and enum fields as expressions": pipeline_run(
        parameters={"nodes": {"type": "integer", "default": 2}, "level": {"type": "string", "default": "DEBUG"}},
        steps=[scoring_step(nodeCount="${{parameters.nodes}}", runMaxTry="${{ parameters.nodes }}",
                            loggingLevel="${{parameters.level}}")]),
}

INVALID_PIPELINE_RUNS = [
    Invalid("no steps", changed(pipeline_run(), "spec.steps", DELETE), "spec.steps", "Required"),
    Invalid("no step at all", pipeline_run(steps=[]), "spec.steps", "non-empty"),
    Invalid("no workdir", changed(pipeline_run(), "spec.workdir", DELETE), "spec.workdir", "Required"),
    Invalid("step without name", pipeline_run(steps=[{"container": {"command": ["true"]}}]),
            "spec.steps[0].name", "Required"),
    Invalid("step name not a DNS label", pipeline_run(steps=[container_step("Score")]),
            "spec.steps[0].name", "does not match"),
    Invalid("step name too long", pipeline_run(steps=[container_step("a" * 64)]), "spec.steps[0].name", "too long"),
    Invalid("duplicate step names", pipeline_run(steps=[container_step("a"), container_step("a")]),
            "spec.steps[1]", "Duplicate"),
    Invalid("duplicate finally step names", pipeline_run(**{"finally": [container_step("a"), container_step("a")]}),
            "spec.finally[1]", "Duplicate"),
    Invalid("unknown step field", pipeline_run(steps=[container_step("a", runAfter=["b"])]),
            "spec.steps[0].runAfter", "unknown field"),
    Invalid("container without command", pipeline_run(steps=[{"name": "a", "container": {"image": "busybox"}}]),
            "spec.steps[0].container.command", "Required"),
    Invalid("command argument not a string", pipeline_run(steps=[{"name": "a", "container": {"command": ["sleep", 5]}}]),
            "spec.steps[0].container.command[1]", "is not of type"),
    Invalid("negative retries", pipeline_run(steps=[container_step("a", retries=-1)]),
            "spec.steps[0].retries", "minimum"),
    Invalid("reuse not a boolean", pipeline_run(steps=[container_step("a", reuse="yes")]),
            "spec.steps[0].reuse", "is not of type"),
    Invalid("dependsOn a step twice",
            pipeline_run(steps=[container_step("a"), container_step("b", dependsOn=["a", "a"])]),
            "spec.steps[1].dependsOn[1]", "Duplicate"),
    Invalid("unknown parameter type", pipeline_run(parameters={"day": {"type": "date"}}),
            "spec.parameters.day.type", "Unsupported value"),
    Invalid("parameter without type", pipeline_run(parameters={"day": {"default": "today"}}),
            "spec.parameters.day.type", "Required"),
    Invalid("batchInference without input", pipeline_run(steps=[{"name": "s", "batchInference": {
        "code": {"entryScript": "/app/score.py"}, "output": {"uri": "az://out/"}}}]),
            "spec.steps[0].batchInference.input", "Required"),
    Invalid("batchInference nodeCount 0", pipeline_run(steps=[scoring_step(nodeCount=0)]),
            "spec.steps[0].batchInference.nodeCount", "minimum"),
    Invalid("batchInference nodeCount as text", pipeline_run(steps=[scoring_step(nodeCount="four")]),
            "spec.steps[0].batchInference.nodeCount", "does not match"),
    Invalid("batchInference unknown output format",
            pipeline_run(steps=[scoring_step(output={"uri": "az://out/", "format": "xml"})]),
            "spec.steps[0].batchInference.output.format", "does not match"),
]
