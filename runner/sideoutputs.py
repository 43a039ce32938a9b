"""Side outputs: the files run() writes to `PARALLELRUN_OUTPUT_DIR` (also
`AZUREML_BI_OUTPUT_PATH`), published under `output.uri` exactly once.

Each worker has one such folder, emptied before every attempt. After a successful run()
its files are kept under the run's `side/<mini-batch>/` (replacing what an attempt
killed before its commit left there); after a failed one they are dropped. The shard
publishes a mini-batch's files (moved under `output.uri`, at the same relative paths)
once its commit record is written, a group at a time as the records are. The merge
publishes what a kill between a commit and its publishing left behind, and drops the
files of mini-batches never committed. So a kill and a resume leave every side output
once. Two mini-batches writing the same name: the one published last wins; name side
outputs after their input.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterable, Mapping

from .layout import Layout
from .records import DoneRecord
from .storage import is_local, join

ENV_VARS = ("PARALLELRUN_OUTPUT_DIR", "AZUREML_BI_OUTPUT_PATH")


class SideFolder:
    """A worker's side-output folder (`path`, local), kept per mini-batch in the run's `side/` folder."""

    def __init__(self, path: str, fs, layout: Layout):
        self.path, self.fs, self.layout = path, fs, layout
        self.clean = False  # known empty: the last attempt's files were kept, or it wrote none
        self.begin()

    def begin(self) -> None:
        """Empty the folder: an attempt sees only its own files."""
        if not self.clean and not (os.path.isdir(self.path) and self._empty()):
            shutil.rmtree(self.path, ignore_errors=True)
            os.makedirs(self.path)
        self.clean = False  # run() may write until keep()

    def _empty(self) -> bool:
        """One scandir: the common case, a script that writes no side output, costs no walk."""
        with os.scandir(self.path) as entries:
            return next(entries, None) is None

    def keep(self, mb_id: int) -> int:
        """Move the attempt's files to the run's `side/<mb_id>/`; how many there were."""
        if self._empty():
            self.clean = True
            return 0
        files = [os.path.join(folder, name) for folder, _, names in os.walk(self.path) for name in names]
        if not files:
            return 0
        target = self.layout.side(mb_id)
        if self.fs.exists(target):  # an attempt killed before its commit
            self.fs.rm(target, recursive=True)
        for path in files:
            destination = join(target, os.path.relpath(path, self.path).replace(os.sep, "/"))
            if is_local(self.fs):
                os.makedirs(os.path.dirname(destination), exist_ok=True)
                shutil.move(path, destination)
            else:
                self.fs.put_file(path, destination)
        self.begin()
        self.clean = True
        return len(files)


def publish(fs, layout: Layout, mini_batch_ids: Iterable[int]) -> None:
    """Move the kept files of committed mini-batches under the output folder."""
    for mb_id in mini_batch_ids:
        folder = layout.side(mb_id)
        for path in fs.find(folder):
            destination = join(layout.output_path, path[len(folder.rstrip("/")) + 1:])
            if is_local(fs):
                os.makedirs(os.path.dirname(destination), exist_ok=True)
            fs.mv(path, destination)
        try:
            fs.rm(folder, recursive=True)
        except FileNotFoundError:  # published already, by a run cut short before this
            pass


def settle(fs, layout: Layout, committed: Mapping[int, DoneRecord]) -> None:
    """At the merge: publish what committed mini-batches still keep, drop what the others left."""
    if not fs.exists(layout.side_dir):
        return
    kept = [int(os.path.basename(p.rstrip("/"))) for p in fs.ls(layout.side_dir, detail=False)]
    publish(fs, layout, sorted(i for i in kept if i in committed and committed[i].status == "succeeded"))
    fs.rm(layout.side_dir, recursive=True)
