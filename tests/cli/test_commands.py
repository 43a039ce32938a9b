"""The command line as a user meets it: help with any extra missing, one-line errors with
exit 2, results on stdout and diagnostics on stderr, `-o json`, folders of resources."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from parallelrun.runner.records import RunResult

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"

# Each extra's modules, made unimportable in the command's process as if the extra were not installed.
EXTRAS = {"operator": ("kopf", "kubernetes", "prometheus_client"), "azure": ("adlfs",)}
MISSING = {f"no {module}": (module,) for modules in EXTRAS.values() for module in modules}
MISSING["no extras"] = tuple(m for modules in EXTRAS.values() for m in modules)
COMMANDS = [[], ["run"], ["validate"], ["schedule"], ["trigger"], ["operator"], ["report"], ["status"], ["list"],
            ["logs"], ["clean"]]

_BLOCKED = """\
import sys
for name in filter(None, sys.argv[1].split(",")):
    sys.modules[name] = None  # `import name` raises ModuleNotFoundError, as when it is not installed
sys.argv = ["parallelrun", *sys.argv[2:]]
from parallelrun.cli import command
command()
"""


def parallelrun(*args: str, missing: tuple[str, ...] = (), cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", _BLOCKED, ",".join(missing), *args], capture_output=True,
                          text=True, timeout=120, cwd=cwd or ROOT.parent)


def one_line_error(result: subprocess.CompletedProcess) -> str:
    """The error of a command that failed as a user's mistake should: exit 2, one line, no traceback."""
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    return lines[0]


# --- help ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("missing", MISSING.values(), ids=MISSING.keys())
@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "parallelrun")
def test_help_works_whatever_extra_is_missing(command, missing):
    result = parallelrun(*command, "--help", missing=missing)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: parallelrun") and result.stderr == ""


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "parallelrun")
def test_help_says_what_the_command_does_with_an_example(command):
    text = parallelrun(*command, "--help").stdout
    _usage, _, rest = text.partition("\n\n")
    assert rest.split("\n", 1)[0].strip(), text  # a description after the usage
    assert "\n  parallelrun " in text.split("example", 1)[-1], text  # an example command line
    for internals in ("imported", "import ", "rich", "pyarrow", "kopf is", "issue"):
        assert internals not in rest, (internals, text)


# --- a missing extra: one line naming it, exit 2 ------------------------------------------------------


@pytest.mark.parametrize("module", ["kopf", "prometheus_client"])  # kubernetes is trigger's
def test_the_operator_without_its_extra(module):
    line = one_line_error(parallelrun("operator", "--standalone", missing=(module,)))
    assert line == (f"parallelrun: {module} is not installed (needed for `parallelrun operator`); "
                    "pip install 'parallelrun[operator]'")


def test_trigger_without_the_kubernetes_client():
    line = one_line_error(parallelrun("trigger", "psched/nightly", missing=("kubernetes",)))
    assert line.endswith("kubernetes is not installed (needed for `parallelrun trigger`); "
                         "pip install 'parallelrun[operator]'")


AZURE_EXAMPLES = sorted(EXAMPLES.rglob("*-azure.yaml"))


@pytest.mark.parametrize("example", AZURE_EXAMPLES, ids=lambda p: str(p.relative_to(EXAMPLES)))
def test_azure_examples_without_adlfs(example):
    """validate reads the components or checks the input on az://: each field names the extra."""
    result = parallelrun("validate", str(example), missing=("adlfs",))
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stderr
    problems = [line for line in result.stderr.splitlines() if line.startswith("  spec.")]
    assert problems and all(line.endswith("adlfs is not installed (needed for az://); pip install "
                                          "'parallelrun[azure]'") or "pip install 'parallelrun[azure]'; " in line
                            for line in problems), problems


def test_running_an_azure_job_without_adlfs():
    line = one_line_error(parallelrun("run", str(EXAMPLES / "iris/job-azure.yaml"), missing=("adlfs",)))
    assert line.endswith(": adlfs is not installed (needed for az://); pip install 'parallelrun[azure]'"), line


def test_a_protocol_of_no_extra_names_its_package(job):
    job.script("def run(b):\n    return b\n")
    path = job.write(output={"uri": "s3://bucket/out/"})
    line = one_line_error(parallelrun("run", str(path), missing=("s3fs",)))
    assert line.endswith("://bucket/out/: s3fs is not installed (needed for s3://); pip install s3fs"), line


def test_a_missing_module_of_no_extra_is_a_bug_not_an_install_hint():
    """Only the extras' modules are a user's fix; any other import error stays a traceback."""
    result = parallelrun("validate", str(EXAMPLES / "schedules/nightly-scoring.yaml"), missing=("zoneinfo",))
    assert result.returncode == 1 and "Traceback" in result.stderr


# --- usage errors: one line, exit 2 --------------------------------------------------------------------


@pytest.mark.parametrize("count", ["-3", "0", "ten", "1.5"])
def test_schedule_next_needs_a_positive_count(count):
    result = parallelrun("schedule", "next", str(EXAMPLES / "schedules/nightly-scoring.yaml"), "-n", count)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.splitlines()[-1] == (f"parallelrun schedule: error: argument -n: {count!r} is not a "
                                              "count; use a whole number of at least 1, e.g. -n 10")


@pytest.mark.parametrize("kind,example,fix", [
    ("PipelineSchedule", "schedules/nightly-scoring.yaml", "`parallelrun schedule run "),
    ("Component", "components/train-iris/component.yaml", "a step of a PipelineRun"),
])
def test_run_names_the_command_for_what_it_does_not_run(kind, example, fix):
    line = one_line_error(parallelrun("run", str(EXAMPLES / example)))
    assert line.startswith(f"{EXAMPLES / example}: a {kind} ") and fix in line


@pytest.mark.parametrize("command,what", [(["run"], "a BatchInferenceJob or PipelineRun YAML file"),
                                          (["run", "-o", "json"], "a BatchInferenceJob or PipelineRun YAML file"),
                                          (["schedule", "next"], "a PipelineSchedule YAML file"),
                                          (["schedule", "run"], "a PipelineSchedule YAML file")])
def test_a_file_that_is_not_there(tmp_path, command, what):
    missing = tmp_path / "nope.yaml"
    line = one_line_error(parallelrun(*command, str(missing)))
    assert line == f"parallelrun: {missing}: no such file; give the path of {what}"


def test_a_pipeline_takes_only_parameters_with_set():
    result = parallelrun("run", str(EXAMPLES / "pipelines/iris/pipeline.yaml"), "--set", "maxIter=3")
    assert result.returncode == 2
    assert result.stderr.splitlines() == [f"{EXAMPLES / 'pipelines/iris/pipeline.yaml'}: invalid PipelineRun:",
                                          "  --set 'maxIter=3': a pipeline takes parameter values, e.g. "
                                          "--set parameters.maxIter=500"]


def test_validate_an_empty_folder(tmp_path):
    (tmp_path / "notes.txt").write_text("no resource here")
    line = one_line_error(parallelrun("validate", str(tmp_path)))
    assert line == f"parallelrun: {tmp_path}: no .yaml or .yml file in this folder; give a resource file or a folder of them"


def test_trigger_of_something_else_than_a_schedule():
    line = one_line_error(parallelrun("trigger", "bij/iris"))
    assert line == "bij/iris: name a schedule as psched/NAME"


# --- validate: folders, --set, the entry script ------------------------------------------------------------


def test_every_example_validates_through_its_folder():
    every = sorted(str(p) for p in EXAMPLES.rglob("*") if p.suffix in (".yaml", ".yml"))
    result = parallelrun("validate", str(EXAMPLES), "--no-check", "-o", "json")
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads(result.stdout)
    assert report["valid"] is True
    assert [r["file"] for r in report["resources"]] == every
    kinds = {r["kind"] for r in report["resources"]}
    assert kinds == {"BatchInferenceJob", "PipelineRun", "PipelineSchedule", "Component", "AzureMLJob"}


def test_a_folder_reports_each_file_and_fails_for_one(tmp_path):
    nested = tmp_path / "team" / "jobs"
    nested.mkdir(parents=True)
    (tmp_path / "schedule.yml").write_text((EXAMPLES / "schedules/weekly-retraining.yaml").read_text())
    (nested / "bad.yaml").write_text("kind: BatchInferenceJob\nspec: {input: {uri: d, type: files}, nodeCount: 0}\n")
    result = parallelrun("validate", str(tmp_path), "--no-check")
    assert result.returncode == 2
    assert result.stdout.startswith(f"{tmp_path / 'schedule.yml'}: valid PipelineSchedule 'iris-retrain'")
    assert result.stderr.startswith(f"{nested / 'bad.yaml'}: invalid BatchInferenceJob:\n")
    assert "spec.nodeCount: 0 is below the minimum 1" in result.stderr


def test_validate_compiles_the_entry_script(job):
    job.files(1)
    job.script("def run(mini_batch):\n    return [x for x in mini_batch\n")
    path = job.write()
    result = parallelrun("validate", str(path))
    assert result.returncode == 2 and result.stdout == ""
    assert "  spec.code.entryScript: score.py line 2: " in result.stderr and result.stderr.endswith(
        "; fix the script\n")
    job.script("def run(mini_batch):\n    return mini_batch\n")
    assert parallelrun("validate", str(path)).returncode == 0


def test_validate_takes_set_as_run_does(job):
    job.files(1)
    job.script("def run(mini_batch):\n    return mini_batch\n")
    path = job.write()
    assert parallelrun("validate", str(path)).returncode == 0
    moved = parallelrun("validate", str(path), "--set", "input.uri=elsewhere/")
    assert moved.returncode == 2 and "spec.input.uri: " in moved.stderr and "elsewhere/ does not exist" in moved.stderr
    invalid = parallelrun("validate", str(path), "--set", "nodeCount=0", "--no-check")
    assert invalid.returncode == 2 and "spec.nodeCount: 0 is below the minimum 1" in invalid.stderr
    pipeline = EXAMPLES / "pipelines/iris/pipeline.yaml"
    assert parallelrun("validate", str(pipeline), "--set", "parameters.scoringDate=2025-01-31").returncode == 0
    wrong = parallelrun("validate", str(pipeline), "--set", "nodeCount=2")
    assert wrong.returncode == 2 and "--set 'nodeCount=2': a pipeline takes parameter values" in wrong.stderr


# --- -o json --------------------------------------------------------------------------------------------


def test_validate_json(job):
    job.files(1)
    job.script("def run(mini_batch):\n    return mini_batch\n")
    good = job.write()
    bad = job.root / "bad.yaml"
    bad.write_text("kind: BatchInferenceJob\nspec: {input: {uri: d, type: files}, nodeCount: 0}\n")
    result = parallelrun("validate", str(good), str(bad), "-o", "json")
    assert result.returncode == 2
    report = json.loads(result.stdout)
    assert report["valid"] is False
    first, second = report["resources"]
    assert first == {"file": str(good), "kind": "BatchInferenceJob", "name": "test", "valid": True, "errors": [],
                     "detail": "files input, its files are there"}
    assert second["valid"] is False and second["name"] is None
    assert "spec.nodeCount: 0 is below the minimum 1" in second["errors"]


def test_schedule_next_json():
    result = parallelrun("schedule", "next", str(EXAMPLES / "schedules/nightly-scoring.yaml"), "-n", "3", "-o", "json")
    assert result.returncode == 0 and result.stderr == ""
    report = json.loads(result.stdout)
    assert report["name"] == "iris-nightly" and report["timeZone"] == "Europe/Berlin"
    assert len(report["times"]) == 3
    assert all(t["utc"].endswith("Z") and t["local"][11:16] in ("02:30", "03:00") for t in report["times"])
    trigger_only = json.loads(parallelrun("schedule", "next", str(EXAMPLES / "schedules/data-arrival.yaml"),
                                          "-o", "json").stdout)
    assert trigger_only["times"] == [] and trigger_only["schedule"] == "on data: az://incoming/iris/"


def test_schedule_next_prints_its_times_on_stdout():
    result = parallelrun("schedule", "next", str(EXAMPLES / "schedules/weekly-retraining.yaml"), "-n", "2")
    assert result.returncode == 0 and result.stderr == ""
    assert len(result.stdout.splitlines()) == 2


def test_run_json_of_a_job_that_succeeds_and_one_that_fails(job):
    job.files(5)
    job.script("def run(mini_batch):\n    return mini_batch[1:]\n")
    path = job.write(miniBatchSize=2, processCountPerNode=1, runMaxTry=1)
    ok = parallelrun("run", str(path), "-o", "json")
    assert ok.returncode == 0, ok.stderr
    summary = json.loads(ok.stdout)
    assert summary["status"] == "Succeeded" and summary["exitCode"] == 0 and summary["kind"] == "BatchInferenceJob"
    assert summary["items"] == {"succeeded": 2, "failed": 3} and summary["miniBatches"]["total"] == 3
    assert summary["output"]["uri"] == str(job.final()) and "runId" in summary
    failed = parallelrun("run", str(path), "-o", "json", "--set", "errorThreshold=0")
    assert failed.returncode == 1
    outcome = json.loads(failed.stdout)
    assert outcome["status"] == "Failed" and outcome["exitCode"] == 1 and "errorThreshold 0" in outcome["error"]
    invalid = parallelrun("run", str(path), "-o", "json", "--set", "nodeCount=0")
    outcome = json.loads(invalid.stdout)
    assert invalid.returncode == 2 and outcome["status"] == "Invalid"
    assert any(e.startswith("spec.nodeCount: 0 is below") for e in outcome["errors"])
    for printed in (ok, failed, invalid):  # the document is a RunResult's, read back to the same bytes
        assert json.dumps(RunResult.from_dict(json.loads(printed.stdout)).to_dict(), indent=2) + "\n" == printed.stdout


def test_run_json_of_a_pipeline(tmp_path):
    pipeline = tmp_path / "pipeline.yaml"
    pipeline.write_text(yaml.safe_dump({
        "apiVersion": "parallelrun.dev/v1alpha1", "kind": "PipelineRun", "metadata": {"name": "p"},
        "spec": {"workdir": "work/", "steps": [{"name": "ok", "container": {"command": [sys.executable, "-c", "0"]}}]},
    }))
    result = parallelrun("run", str(pipeline), "-o", "json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"file": str(pipeline), "kind": "PipelineRun", "exitCode": 0,
                                         "status": "Succeeded"}


# --- plain lines off a terminal ---------------------------------------------------------------------------


def test_off_a_terminal_nothing_is_wrapped_at_80_columns(job):
    job.files(3)
    job.script("def run(mini_batch):\n    return mini_batch\n")
    name = "a-job-whose-name-is-long-enough-that-a-summary-title-of-eighty-columns-would-wrap-it"
    path = job.write(processCountPerNode=1)
    doc = yaml.safe_load(path.read_text())
    doc["metadata"]["name"] = name
    path.write_text(yaml.safe_dump(doc))
    result = parallelrun("run", str(path))
    assert result.returncode == 0, result.stderr
    title = [line for line in result.stderr.splitlines() if line.startswith(f"run {name}-")]
    assert len(title) == 1 and title[0].endswith(": Succeeded"), result.stderr
    assert any(line.startswith("summary: ") and line.endswith("/summary.json") for line in result.stderr.splitlines())


def test_off_a_terminal_warnings_are_plain_lines(job):
    job.files(2)
    job.script("def run(mini_batch):\n    raise ValueError('a reason long enough to pass the eightieth column of a terminal "
               "that is not there')\n")
    result = parallelrun("run", str(job.write(runMaxTry=2, processCountPerNode=1, miniBatchSize=2)))
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert "WARNING mini-batch 0 attempt 1/2 failed: ValueError: a reason long enough to pass the eightieth column " \
           "of a terminal that is not there" in lines
    assert [line for line in lines if line != line.rstrip() or len(line) > 1000] == []
