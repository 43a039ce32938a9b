"""examples/vllm, run unchanged against a stand-in for vLLM's async engine
(tests/standin_vllm/vllm.py: the same interface, continuous batching's timing, long-tailed
generations): the engine made in async init(), many mini-batches in it at once, every
prompt answered once, in plan order."""

import importlib.util
import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

from rich.console import Console

from parallelrun.runner.local import run_local

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "vllm"
STANDIN = Path(__file__).resolve().parents[1] / "standin_vllm" / "vllm.py"


def _standin():
    spec = importlib.util.spec_from_file_location("standin_vllm", STANDIN)
    module = sys.modules[spec.name] = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


completion = _standin().completion


def example_job(tmp_path: Path, prompts: int, *overrides: str) -> tuple[list[str], dict]:
    """Run the example on `prompts` prompts with the stand-in beside its score.py; (overrides, prompts by id)."""
    subprocess.run([sys.executable, str(EXAMPLE / "prepare.py"), "--prompts", str(prompts), "--files", "2",
                    "--data-dir", str(tmp_path / "prompts")], check=True, capture_output=True)
    code = tmp_path / "code"
    code.mkdir()
    shutil.copy(EXAMPLE / "score.py", code)
    shutil.copy(STANDIN, code)  # imported as vllm: the worker puts the script's folder first on sys.path
    rows = [json.loads(line) for f in sorted((tmp_path / "prompts").glob("*.jsonl")) for line in f.open()]
    return [f"input.uri={tmp_path}/prompts/", f"output.uri={tmp_path}/output/", f"code.uri={code}/",
            "processCountPerNode=1", *overrides], {row["id"]: row["prompt"] for row in rows}


def test_the_vllm_example_keeps_many_mini_batches_in_the_engine(tmp_path, monkeypatch):
    stats = tmp_path / "most-at-once"
    monkeypatch.setenv("STANDIN_VLLM_STATS", str(stats))
    overrides, prompts = example_job(tmp_path, 160, "arguments=[--model, stand-in, --max-tokens, '64']")
    summary = run_local(str(EXAMPLE / "job.yaml"), overrides, console=Console(file=io.StringIO()))
    assert summary["items"] == {"succeeded": 160, "failed": 0}
    rows = [json.loads(line) for line in (tmp_path / "output" / "completions.jsonl").open()]
    assert [row["id"] for row in rows] == sorted(prompts)  # each once, in plan order
    assert all(row["completion"] == completion(prompts[row["id"]], 64) for row in rows)
    # 160 prompts in mini-batches of 8, 32 in flight: all 20 mini-batches in the engine at once
    assert json.loads(stats.read_text())["most"] > 8 * 4
