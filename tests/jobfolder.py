"""A BatchInferenceJob in a folder of its own, as a user would write it (shared by the test folders)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import yaml


class JobFolder:
    """data/ in, a scoring script, job.yaml, output/ out."""

    def __init__(self, root: Path):
        self.root = root
        self.data = root / "data"
        self.output = root / "output"
        self.data.mkdir()

    def script(self, body: str, name: str = "score.py") -> Path:
        path = self.root / name
        path.write_text(textwrap.dedent(body))
        return path

    def write(self, **spec) -> Path:
        """The job YAML with `spec` over a files/txt default (a mapping adds to the default's fields)."""
        full = {"input": {"uri": "data/", "type": "files"}, "code": {"uri": ".", "entryScript": "score.py"},
                "output": {"uri": "output/"}, "processCountPerNode": 2, "runInvocationTimeout": 20}
        for key, value in spec.items():
            if isinstance(value, dict) and isinstance(full.get(key), dict):
                full[key] = {**full[key], **value}
            else:
                full[key] = value
        path = self.root / "job.yaml"
        path.write_text(yaml.safe_dump({"apiVersion": "parallelrun.dev/v1alpha1", "kind": "BatchInferenceJob",
                                        "metadata": {"name": "test"}, "spec": full}))
        return path

    def files(self, count: int, prefix: str = "item") -> list[str]:
        names = [f"{prefix}_{i:04d}.txt" for i in range(count)]
        for i, name in enumerate(names):
            (self.data / name).write_text(f"{i}\n")
        return names

    def actions(self, actions: list[str]) -> list[str]:
        """One file per action (item_000.txt...), the action its content, for a script that acts on it."""
        names = [f"item_{i:03d}.txt" for i in range(len(actions))]
        for name, action in zip(names, actions):
            (self.data / name).write_text(action)
        return names

    def final(self, name: str = "parallel_run_step.txt") -> Path:
        return self.output / name

    def summary(self) -> dict:
        """The summary.json of the one run in output/."""
        [path] = self.output.glob("_parallelrun/*/summary.json")
        return json.loads(path.read_text())


# In a worker, the pid of the shard's process: its parent's parent (the pool's zygote forked it).
THE_SHARD = 'int(open(f"/proc/{os.getppid()}/stat").read().rsplit(")", 1)[1].split()[1])'


def killing_script(item: str, victim: str, sleep: float = 0.0) -> str:
    """A scoring script that logs each item it meets to $CALLS_LOG and, the first time it meets
    `item`, kills `victim` with SIGKILL: "os.getpid()" (its worker) or THE_SHARD."""
    pause = f"    time.sleep({sleep})\n" if sleep else ""
    return f"""
import os, signal, time
from pathlib import Path

def run(mini_batch):
{pause}    for path in mini_batch:
        with open(os.environ["CALLS_LOG"], "a") as f:
            f.write(Path(path).name + "\\n")
        marker = Path(os.environ["CALLS_LOG"] + ".killed")
        if Path(path).name == "{item}" and not marker.exists():
            marker.touch()
            os.kill({victim}, signal.SIGKILL)
    return [Path(p).read_text().strip() for p in mini_batch]
"""
