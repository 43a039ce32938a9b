"""Local mode's progress: what a user sees before the first mini-batch ends and while scoring."""

import io
import subprocess
import sys

import pytest
from rich.console import Console

from parallelrun.runner.local import run_local

SLOW_INIT = "import time\n\ndef init():\n    time.sleep(0.5)\n\ndef run(b):\n    return b\n"


@pytest.mark.parametrize("files,processes,expected", [(5, 2, "Starting 2 workers (init)…"),
                                                      (1, 2, "Starting 1 worker (init)…"),
                                                      (6, 3, "Starting 3 workers (init)…")])
def test_off_a_terminal_the_workers_start_is_announced_before_scoring(job, files, processes, expected):
    job.files(files)
    job.script(SLOW_INIT)
    path = job.write(miniBatchSize=1, processCountPerNode=processes)
    result = subprocess.run([sys.executable, "-m", "parallelrun.cli", "run", str(path)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    planned = next(i for i, line in enumerate(lines) if line.startswith("Planned "))
    scoring = next(i for i, line in enumerate(lines) if line.startswith("Scoring: "))
    assert lines[planned + 1:scoring] == [expected]


def test_on_a_terminal_the_bar_says_so_until_a_mini_batch_ends(job):
    job.files(4)
    job.script(SLOW_INIT)
    out = io.StringIO()
    console = Console(file=out, force_terminal=True, width=200)
    run_local(str(job.write(miniBatchSize=1, processCountPerNode=2)), console=console)
    text = out.getvalue()
    assert "Starting 2 workers (init)…" in text and "Scoring" in text
    assert text.index("Starting 2 workers (init)…") < text.rindex("Scoring")
