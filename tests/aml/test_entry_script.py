"""ParallelRunStep (SDK v1) scripts that use AML's EntryScript run unchanged."""

import io

from rich.console import Console

from parallelrun.runner.local import run_local

V1_SCRIPT = """
import os
from pathlib import Path

from azureml_user.parallel_run import EntryScript


def init():
    entry_script = EntryScript()
    entry_script.logger.info("init from %s", entry_script.working_dir)


def run(mini_batch):
    entry_script = EntryScript()
    assert entry_script is EntryScript()
    out = Path(entry_script.output_dir)
    results = []
    for path in mini_batch:
        name = Path(path).name
        (out / (name + ".mask")).write_text(name.upper())
        entry_script.logger.warning("scored %s", name)
        results.append(name)
    return results
"""


def test_entry_script_logger_and_output_dir(job):
    for i in range(5):
        (job.data / f"img_{i}.png").write_text("x")
    job.script(V1_SCRIPT)
    summary = run_local(str(job.write(miniBatchSize=2)), console=Console(file=io.StringIO()))
    assert summary["items"] == {"succeeded": 5, "failed": 0}
    assert sorted(p.name for p in job.output.glob("*.mask")) == [f"img_{i}.png.mask" for i in range(5)]
    assert (job.output / "img_3.png.mask").read_text() == "IMG_3.PNG"
    logs = "".join(p.read_text() for p in job.output.glob("_parallelrun/*/logs/*.log"))
    assert all(f"scored img_{i}.png" in logs for i in range(5))
