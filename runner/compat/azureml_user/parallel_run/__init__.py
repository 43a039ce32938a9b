"""`from azureml_user.parallel_run import EntryScript`, as ParallelRunStep scripts use it: its
`logger` writes to the worker's log, `output_dir` is the side-output folder (published
with the mini-batch's commit, runner/sideoutputs.py), `working_dir` the worker's current
folder."""

from __future__ import annotations

import logging
import os


class EntryScript:
    """One per process, as AML's: every EntryScript() is the same object."""

    _instance: EntryScript | None = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    @property
    def logger(self) -> logging.Logger:
        return logging.getLogger("azureml_user.parallel_run")

    @property
    def output_dir(self) -> str:
        return os.environ["PARALLELRUN_OUTPUT_DIR"]

    @property
    def working_dir(self) -> str:
        return os.getcwd()
