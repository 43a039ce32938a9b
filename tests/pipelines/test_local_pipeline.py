"""`parallelrun run pipeline.yaml` end to end: real processes, real files, the exit status."""

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest
import yaml

COMPONENT = {
    "kind": "Component", "name": "double", "version": "1",
    "code": {"uri": "./src"},
    "inputs": {"n": {"type": "integer", "default": 2}, "data": {"type": "uri_folder", "optional": True}},
    "outputs": {"result": {"type": "uri_folder"}},
    "command": "python double.py ${{inputs.n}} ${{outputs.result}}",
}
DOUBLE = "import pathlib, sys\npathlib.Path(sys.argv[2], 'value.txt').write_text(str(2 * int(sys.argv[1])))\n"


def py(code: str, *args: str) -> dict:
    """A container step body running Python code (`python` is the test's interpreter)."""
    return {"image": "python:3.11", "command": ["python", "-c", code, *args]}


def write_pipeline(folder, steps, finally_=(), parameters=None, name="demo"):
    (folder / "component" / "src").mkdir(parents=True, exist_ok=True)
    (folder / "component" / "component.yaml").write_text(yaml.safe_dump(COMPONENT))
    (folder / "component" / "src" / "double.py").write_text(DOUBLE)
    doc = {"apiVersion": "parallelrun.dev/v1alpha1", "kind": "PipelineRun", "metadata": {"name": name},
           "spec": {"workdir": "work/", "parameters": parameters or {}, "steps": list(steps),
                    "finally": list(finally_)}}
    path = folder / "pipeline.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def run(path, *args, timeout=120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "parallelrun.cli", "run", str(path), *args],
                          capture_output=True, text=True, timeout=timeout, cwd=path.parent)


def states(result) -> dict[str, str]:
    """step → its last state, from the plain progress lines ("step NAME: STATE...")."""
    found = {}
    for line in result.stderr.splitlines():
        if line.startswith("step ") and ": " in line and not line.startswith("step logs:"):
            name, rest = line[5:].split(": ", 1)
            found[name] = rest.split(" ")[0].rstrip(":")
    return found


TRAIN = {"name": "train", "component": {"uri": "component/component.yaml"}, "inputs": {"n": "${{parameters.n}}"}}
READ = {"name": "report", "container": {**py(
    "import os, pathlib, sys; v = pathlib.Path(sys.argv[1], 'value.txt').read_text(); "
    "pathlib.Path('report.txt').write_text(v); print('value', v, os.environ['UNIT'])", "${{steps.train.outputs.result}}"),
    "env": [{"name": "UNIT", "value": "apples"}]}}
N = {"n": {"type": "integer", "default": 21}}


def test_a_pipeline_runs_its_steps_in_order_and_reports_them(tmp_path):
    path = write_pipeline(tmp_path, [TRAIN, READ], parameters=N)
    result = run(path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "work" / "demo" / "train" / "result" / "value.txt").read_text() == "42"
    assert (tmp_path / "report.txt").read_text() == "42"  # a container step runs in the pipeline's folder
    assert states(result) == {"train": "Succeeded", "report": "Succeeded"}
    assert "pipeline demo: Succeeded" in result.stderr
    logs = tmp_path / "work" / "demo" / "_parallelrun" / "logs"
    assert f"step logs: {logs}" in result.stderr
    assert "value 42 apples" in (logs / "report.log").read_text()  # the container's env is set


def test_a_failed_step_skips_its_dependants_and_finally_still_runs(tmp_path):
    steps = [TRAIN, {"name": "broken", "dependsOn": ["train"], "container": py("import sys; print('no!'); sys.exit(4)")},
             {**READ, "dependsOn": ["broken"]}, {"name": "aside", "container": py("print('independent')")}]
    notify = {"name": "notify", "container": py("import pathlib, sys; pathlib.Path('status.txt').write_text(sys.argv[1])",
                                                "${{run.status}}")}
    result = run(write_pipeline(tmp_path, steps, [notify], parameters=N))
    assert result.returncode == 1
    assert states(result) == {"train": "Succeeded", "broken": "Failed", "report": "Skipped",
                              "aside": "Succeeded", "notify": "Succeeded"}
    assert "step broken: Failed" in result.stderr and "exit code 4: no!" in result.stderr
    assert (tmp_path / "status.txt").read_text() == "Failed"
    assert not (tmp_path / "report.txt").exists()


def test_retries_run_a_failed_step_again(tmp_path):
    flaky = {"name": "flaky", "retries": 2, "container": py(
        "import pathlib, sys; p = pathlib.Path('tries'); n = len(p.read_text()) if p.exists() else 0; "
        "p.write_text('x' * (n + 1)); sys.exit(0 if n == 1 else 1)")}
    assert run(write_pipeline(tmp_path, [flaky])).returncode == 0
    assert (tmp_path / "tries").read_text() == "xx"
    log = (tmp_path / "work" / "demo" / "_parallelrun" / "logs" / "flaky.log").read_text()
    assert "--- attempt 1 of 3" in log and "--- attempt 2 of 3" in log and "attempt 3" not in log


def test_a_second_run_reuses_what_did_not_change(tmp_path):
    counter = {"name": "count", "container": py("open('runs.txt', 'a').write('x')")}
    path = write_pipeline(tmp_path, [TRAIN, READ, counter], parameters=N)
    assert run(path).returncode == 0
    again = run(path)
    assert again.returncode == 0
    assert states(again) == {"train": "Reused", "report": "Reused", "count": "Reused"}
    assert (tmp_path / "runs.txt").read_text() == "x"
    index = tmp_path / "work" / "_parallelrun" / "cache"
    assert {json.loads(p.read_text())["step"] for p in index.glob("*.json")} == {"train", "report", "count"}
    changed = run(path, "--set", "parameters.n=5")  # a new value: train and what reads it run again
    assert states(changed) == {"train": "Succeeded", "report": "Succeeded", "count": "Reused"}
    assert (tmp_path / "report.txt").read_text() == "10"
    back = run(path)  # n=21 again: its index entry is there, but n=5 wrote over its output since
    assert states(back) == {"train": "Succeeded", "report": "Succeeded", "count": "Reused"}
    assert (tmp_path / "report.txt").read_text() == "42"


def test_reuse_false_missing_outputs_and_fresh_run_again(tmp_path):
    counter = {"name": "count", "reuse": False, "container": py("open('runs.txt', 'a').write('x')")}
    path = write_pipeline(tmp_path, [TRAIN, counter], parameters=N)
    assert run(path).returncode == 0
    (tmp_path / "work" / "demo" / "train" / "result" / "value.txt").unlink()
    (tmp_path / "work" / "demo" / "train" / "result").rmdir()
    again = run(path)
    assert states(again) == {"train": "Succeeded", "count": "Succeeded"}  # outputs gone; reuse: false
    assert (tmp_path / "work" / "demo" / "train" / "result" / "value.txt").read_text() == "42"
    assert states(run(path, "--fresh")) == {"train": "Succeeded", "count": "Succeeded"}
    assert (tmp_path / "runs.txt").read_text() == "xxx"


def test_independent_steps_run_side_by_side(tmp_path):
    sleeper = ("import time, pathlib, sys; s = time.time(); time.sleep(1.5); "
               "pathlib.Path(sys.argv[1]).write_text(f'{s} {time.time()}')")
    steps = [{"name": name, "container": py(sleeper, f"{name}.txt")} for name in ("a", "b", "c")]
    assert run(write_pipeline(tmp_path, steps)).returncode == 0
    spans = [tuple(map(float, (tmp_path / f"{name}.txt").read_text().split())) for name in "abc"]
    assert max(start for start, _ in spans) < min(end for _, end in spans)  # all three were running at once


@pytest.mark.parametrize("args, message", [
    (["--set", "parameters.n=many"], "parameters.n: expected an integer, got 'many' for the integer parameter n"),
    (["--set", "parameters.count=1"], "parameters.count: not a parameter of this pipeline; declare it"),
    (["--set", "nodeCount=2"], "--set 'nodeCount=2': a pipeline takes parameter values"),
])
def test_bad_parameters_are_exit_2(tmp_path, args, message):
    result = run(write_pipeline(tmp_path, [TRAIN], parameters=N), *args)
    assert result.returncode == 2 and message in result.stderr
    assert not (tmp_path / "work").exists()


def test_an_invalid_pipeline_reports_every_problem_and_runs_nothing(tmp_path):
    steps = [{"name": "a", "dependsOn": ["b"], "container": py("open('ran', 'w')")},
             {"name": "b", "dependsOn": ["a"], "container": py("", "${{steps.a.outputs.x}}", "${{parameters.nope}}")}]
    result = run(write_pipeline(tmp_path, steps))
    assert result.returncode == 2
    for problem in ("spec.steps[1].container.command[3]: ${{steps.a.outputs.x}}: step a has no outputs",
                    "spec.steps[1].container.command[4]: ${{parameters.nope}} names no parameter",
                    "spec.steps[0]: steps a → b → a form a cycle"):
        assert problem in result.stderr
    assert not (tmp_path / "ran").exists()
    validate = subprocess.run([sys.executable, "-m", "parallelrun.cli", "validate", str(tmp_path / "pipeline.yaml"),
                               str(tmp_path / "component" / "component.yaml")], capture_output=True, text=True)
    assert validate.returncode == 2
    assert "steps a → b → a form a cycle" in validate.stderr
    assert "valid Component 'double' (version 1, command)" in validate.stdout


@pytest.mark.parametrize("sig, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)])
def test_stopping_the_run_stops_its_steps(tmp_path, sig, code):
    hang = {"name": "hang", "container": py(
        "import os, subprocess, time; child = subprocess.Popen(['sleep', '300']); "
        "open('pids', 'w').write(f'{os.getpid()} {child.pid}'); time.sleep(300)")}
    path = write_pipeline(tmp_path, [hang, {"name": "later", "dependsOn": ["hang"], "container": py("")}])
    process = subprocess.Popen([sys.executable, "-m", "parallelrun.cli", "run", str(path)], cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while not (tmp_path / "pids").exists() or len((tmp_path / "pids").read_text().split()) < 2:
        assert time.monotonic() < deadline and process.poll() is None
        time.sleep(0.05)
    pids = [int(p) for p in (tmp_path / "pids").read_text().split()]
    second = run(path)  # the same run, meanwhile
    assert second.returncode == 2 and "failed: run pipeline-demo is already running (pid" in second.stderr
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == code
    assert "interrupted: the running steps were stopped" in stderr
    assert "step hang: Interrupted" in stderr and "pipeline demo: Interrupted" in stderr
    assert "Failed" not in stderr
    deadline = time.monotonic() + 10  # killed: gone once the kernel has reaped them
    while [pid for pid in pids if _alive(pid)] and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not [pid for pid in pids if _alive(pid)]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_run_pipeline_returns_the_phase_and_takes_a_run_name(tmp_path):
    from rich.console import Console

    from parallelrun.runner.pipelines.local import run_pipeline

    path = write_pipeline(tmp_path, [TRAIN], parameters=N)
    doc = yaml.safe_load(path.read_text())
    console = Console(file=open(os.devnull, "w"))
    assert run_pipeline(doc, base_dir=str(tmp_path), parameters={"n": 4}, name="slot-1", console=console) == "Succeeded"
    assert (tmp_path / "work" / "slot-1" / "train" / "result" / "value.txt").read_text() == "8"
    broken = {**doc, "spec": {**doc["spec"], "steps": [{"name": "x", "container": py("raise SystemExit(1)")}]}}
    assert run_pipeline(broken, base_dir=str(tmp_path), console=console) == "Failed"


def test_a_step_that_cannot_start_fails_alone(tmp_path):
    remote = {**COMPONENT, "name": "remote", "code": {"uri": "az://nowhere/src"}}
    (tmp_path / "remote.yaml").write_text(yaml.safe_dump(remote))
    steps = [{"name": "remote", "component": {"uri": "remote.yaml"}}, {"name": "aside", "container": py("")}]
    env = {k: v for k, v in os.environ.items() if not k.startswith("AZURE_STORAGE_")}
    result = subprocess.run([sys.executable, "-m", "parallelrun.cli", "run", str(write_pipeline(tmp_path, steps))],
                            capture_output=True, text=True, timeout=120, cwd=tmp_path, env=env)
    assert result.returncode == 1
    assert states(result) == {"remote": "Failed", "aside": "Succeeded"}
    assert "step remote: Failed: no Azure Storage credentials for az://nowhere/src" in result.stderr


SHORT = "def run(mini_batch):\n    return mini_batch[1:]\n"  # one failed item per mini-batch


def test_the_table_shows_each_batch_steps_failed_items(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for i in range(6):
        (data / f"{i}.txt").write_text(str(i))
    (tmp_path / "score.py").write_text(SHORT)
    job = {"input": {"uri": "data/", "type": "files"}, "code": {"uri": ".", "entryScript": "score.py"},
           "output": {"uri": "${{run.workdir}}/score/"}, "miniBatchSize": 2, "processCountPerNode": 1}
    path = write_pipeline(tmp_path, [{"name": "score", "batchInference": job},
                                     {"name": "strict", "batchInference": {**job, "errorThreshold": 0,
                                      "output": {"uri": "${{run.workdir}}/strict/"}}},
                                     {"name": "plain", "container": py("")}])
    result = run(path)
    assert result.returncode == 1, result.stderr
    lines = result.stderr.splitlines()
    assert any(line.startswith("step score: Succeeded in ") and line.endswith(", 3 failed items") for line in lines)
    # errorThreshold 0 stops the step at its first failed items: how many ran by then varies
    [strict] = [line for line in lines if line.startswith("step strict: Failed in ")]
    failed = re.search(r", (\d+) failed items: ", strict).group(1)
    rows = {cells[0]: cells for cells in (_cells(line) for line in lines) if cells}
    assert rows["step"][3] == "failed items"
    assert (rows["score"][1], rows["score"][3]) == ("Succeeded", "3")
    assert (rows["strict"][1], rows["strict"][3]) == ("Failed", failed) and int(failed) >= 1
    assert (rows["plain"][1], rows["plain"][3]) == ("Succeeded", "")


def _cells(line: str) -> list[str]:
    """The cells of a row of the summary table as rich draws it off a terminal."""
    return [cell.strip() for cell in line.strip("│┃ ").split("│" if "│" in line else "┃")] if line[:1] in "│┃" else []


# Fails its "bad" items (fewer results than items) and holds at item 5 until the file $RELEASE exists.
HELD = """
import os, time
from pathlib import Path

def run(mini_batch):
    for path in mini_batch:
        if Path(path).name == "5.txt":
            while not os.path.exists(os.environ["RELEASE"]):
                time.sleep(0.05)
    return [p for p in mini_batch if "bad" not in p]
"""


def test_a_running_batch_step_shows_its_progress_and_failed_items(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    for name in ("0.txt", "1-bad.txt", "2.txt", "3-bad.txt", "4.txt", "5.txt", "6.txt", "7.txt"):
        (data / name).write_text(name)
    (tmp_path / "score.py").write_text(HELD)
    job = {"input": {"uri": "data/", "type": "files"}, "code": {"uri": ".", "entryScript": "score.py"},
           "output": {"uri": "${{run.workdir}}/score/"}, "miniBatchSize": 1, "processCountPerNode": 1,
           "errorThreshold": -1}
    path = write_pipeline(tmp_path, [{"name": "score", "batchInference": job}])
    release = tmp_path / "release"
    process = subprocess.Popen([sys.executable, "-m", "parallelrun.cli", "run", str(path)], cwd=tmp_path,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                               env=dict(os.environ, RELEASE=str(release)))
    deadline = threading.Timer(60, release.touch)  # without a progress line, the run ends and the loop with it
    deadline.start()
    try:
        lines = []
        for line in process.stderr:  # the step's progress lines come while it waits at item 5
            lines.append(line.rstrip("\n"))
            if re.fullmatch(r"step score: [2-5]/8 mini-batches, 2 failed items", lines[-1]):
                break
        else:
            raise AssertionError(f"no progress line with the failed items: {lines}")
        release.touch()
        rest = process.stderr.read().splitlines()
        assert process.wait(timeout=120) == 0  # failed items within errorThreshold
    finally:
        deadline.cancel()
        if process.poll() is None:
            process.kill()
    assert any(line.startswith("step score: Succeeded in ") and line.endswith(", 2 failed items") for line in rest)
    errors = re.compile(rf"errors: {re.escape(str(tmp_path))}/work/demo/score/_parallelrun/demo-score-\w+/errors\.jsonl")
    assert any(errors.search(line) for line in rest), rest  # the table says where the failed items are listed
