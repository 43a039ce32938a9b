"""`python -m parallelrun.runner step --step F.json`: one step from its resolved JSON, as real processes."""

import json
import os
import signal
import subprocess
import sys
import uuid

import fsspec
import pytest

from parallelrun.runner.pipelines.resolve import ResolvedStep
from parallelrun.runner.pipelines.steprun import StepError, run_step

WRITE = ("mkdir -p ${{outputs.model}} && cp ${{inputs.data}}/x.txt ${{outputs.model}}/ && "
         "echo ${{inputs.n}} > ${{outputs.report}} && python helper.py ${{outputs.model}}")


def component_step(tmp_path, **fields) -> ResolvedStep:
    code = tmp_path / "code"
    code.mkdir(exist_ok=True)
    (code / "helper.py").write_text("import sys, pathlib\npathlib.Path(sys.argv[1], 'helped').write_text('yes')\n")
    data = tmp_path / "data in"
    data.mkdir(exist_ok=True)
    (data / "x.txt").write_text("x")
    out = tmp_path / "work" / "run" / "train"
    values = {"name": "train", "kind": "component", "run": "run", "fingerprint": "f" * 64, "command": WRITE, "code": str(code),
                  "inputs": {"data": str(data), "n": 7}, "input_types": {"data": "uri_folder", "n": "integer"},
                  "outputs": {"model": f"{out}/model/", "report": f"{out}/report"},
                  "output_types": {"model": "uri_folder", "report": "uri_file"},
                  "component": {"name": "train", "version": "1"}}
    return ResolvedStep(**{**values, **fields})


def run_cli(tmp_path, step: ResolvedStep | dict, **kwargs) -> subprocess.CompletedProcess:
    path = tmp_path / f"step-{uuid.uuid4().hex}.json"
    path.write_text(json.dumps(step.to_dict() if isinstance(step, ResolvedStep) else step))
    return subprocess.run([sys.executable, "-m", "parallelrun.runner", "step", "--step", str(path)],
                          capture_output=True, text=True, timeout=60, **kwargs)


def test_a_component_runs_from_a_copy_of_its_code_with_local_outputs(tmp_path):
    step = component_step(tmp_path)
    stale = tmp_path / "work" / "run" / "train" / "model" / "stale.txt"
    stale.parent.mkdir(parents=True)
    stale.write_text("from an earlier attempt")
    result = run_cli(tmp_path, step)
    assert result.returncode == 0, result.stderr
    model = tmp_path / "work" / "run" / "train" / "model"
    assert sorted(p.name for p in model.iterdir()) == ["helped", "x.txt"]  # emptied first
    assert (tmp_path / "work" / "run" / "train" / "report").read_text() == "7\n"
    assert not (tmp_path / "code" / "helped").exists()  # it ran in a copy


def test_the_exit_status_passes_through(tmp_path):
    result = run_cli(tmp_path, component_step(tmp_path, command=["sh", "-c", "echo bad >&2; exit 5"]))
    assert (result.returncode, result.stderr) == (5, "bad\n")
    killed = run_cli(tmp_path, component_step(tmp_path, command=["sh", "-c", "kill -9 $$"]))
    assert killed.returncode == 128 + 9


@pytest.mark.parametrize("change, message", [
    ({"inputs": {"data": "/nowhere/data", "n": 1}}, "step: input data is missing: /nowhere/data\n"),
    ({"code": "/nowhere/code"}, "step: the code of component train 1 is missing: /nowhere/code\n"),
    ({"kind": "batchInference", "command": None, "job": {}},
     "step: step train runs a BatchInferenceJob; run it with `parallelrun run` or the operator\n"),
])
def test_a_step_that_cannot_start_is_one_line_and_exit_2(tmp_path, change, message):
    result = run_cli(tmp_path, component_step(tmp_path, **change))
    assert (result.returncode, result.stderr) == (2, message)


def test_a_file_that_is_no_resolved_step_is_exit_2(tmp_path):
    result = run_cli(tmp_path, {"format": 9})
    assert result.returncode == 2 and result.stderr.startswith("step: ") and result.stderr.count("\n") == 1
    assert "format: 9 is not a resolved step" in result.stderr


def test_a_container_step_runs_in_its_folder_with_its_env(tmp_path):
    step = ResolvedStep(name="c", kind="container", run="r", outputs={}, fingerprint="f",
                        command=["sh", "-c", 'echo "$GREETING" > here.txt'], cwd=str(tmp_path),
                        env=[{"name": "GREETING", "value": "hi there"}])
    assert run_cli(tmp_path, step).returncode == 0
    assert (tmp_path / "here.txt").read_text() == "hi there\n"


def test_remote_outputs_are_uploaded_only_after_success(tmp_path):
    fs = fsspec.filesystem("memory")
    root = f"memory://steprun-{uuid.uuid4().hex}"
    fs.pipe_file(f"{root}/train/model/old.txt", b"old")
    step = component_step(tmp_path, outputs={"model": f"{root}/train/model/", "report": f"{root}/train/report"})
    assert run_step(step, str(tmp_path / "scratch1")) == 0
    assert sorted(fs.ls(f"{root}/train/model", detail=False)) == [f"/{root[9:]}/train/model/helped",
                                                                   f"/{root[9:]}/train/model/x.txt"]
    assert fs.cat_file(f"{root}/train/report") == b"7\n"
    failing = component_step(tmp_path, command=WRITE + " && exit 3",
                             outputs={"model": f"{root}/other/model/", "report": f"{root}/other/report"})
    assert run_step(failing, str(tmp_path / "scratch2")) == 3
    assert not fs.exists(f"{root}/other")
    no_file = component_step(tmp_path, command="true", outputs={"model": f"{root}/x/model/", "report": f"{root}/x/r"})
    with pytest.raises(StepError, match="the command wrote no file"):
        run_step(no_file, str(tmp_path / "scratch3"))


def test_sigterm_is_passed_to_the_command(tmp_path):
    step = component_step(tmp_path, command=["sh", "-c", "trap 'echo stopped; exit 7' TERM; echo up; "
                                                          "while true; do sleep 0.1; done"])
    path = tmp_path / "step.json"
    path.write_text(json.dumps(step.to_dict()))
    process = subprocess.Popen([sys.executable, "-m", "parallelrun.runner", "step", "--step", str(path)],
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout.readline() == "up\n"
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=20) == 7
    assert process.stdout.read() == "stopped\n"


def test_an_output_its_storage_refuses_stops_the_step_before_it_runs(tmp_path):
    step = component_step(tmp_path, command="touch ran", outputs={"model": "az://nope/m/", "report": "az://nope/r"})
    env = {k: v for k, v in os.environ.items() if not k.startswith("AZURE_STORAGE_")}
    result = run_cli(tmp_path, step, env=env, cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert result.stderr.startswith("step: no Azure Storage credentials for az://nope/m/")
    assert not list(tmp_path.rglob("ran"))
