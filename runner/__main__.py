"""The in-pod entry point: `python -m parallelrun.runner {plan,score,merge} --spec F --run-id ID`
(and `step --step F.json`, a pipeline's container or component step: pipelines/steprun.py).

`score` runs shard JOB_COMPLETION_INDEX of the plan and ends with the exit code and
termination message of the runner contract (contract.py). While it runs, it publishes
the shard's counts so far every PROGRESS_PUBLISH_SECONDS (Layout.progress), which the
operator reads for live progress and to stop a run whose summed counts cross a threshold.

    0  shard done (failed items are counted, not fatal)
    2  bad configuration or user code that cannot load: a PermanentError (not worth retrying)
    3  this shard alone exceeds a threshold (the Job fails fast)
    other  a crash: Kubernetes retries the index and the retry resumes
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import tempfile
import time

from .accounting import Counts
from .contract import (
    EXIT_CONFIG,
    EXIT_OK,
    EXIT_RETRY,
    EXIT_THRESHOLD,
    PROGRESS_PUBLISH_SECONDS,
    SCRATCH_ENV,
    TERMINATION_LOG,
    PermanentError,
)
from .layout import Layout
from .merge import MergeError, merge
from .plan import ensure_plan, read_plan
from .pool import InitError
from .records import ShardProgress, TerminationMessage
from .shard import ShardRunner
from .spec import load_spec_file
from .storage import filesystem, storage_error, write_atomic

log = logging.getLogger("parallelrun")


def termination_message(counts: Counts | None, reason: str | None = None) -> str:
    """A scoring pod's message: its counts (none yet: zeros) and why it failed."""
    return TerminationMessage(counts or Counts(), reason).to_text()


def _write_termination_log(text: str) -> None:
    path = os.environ.get("PARALLELRUN_TERMINATION_LOG", TERMINATION_LOG)
    try:
        with open(path, "w") as f:
            f.write(text)
    except OSError:
        pass  # not in a pod
    print(text, file=sys.stderr)


def _context(args):
    spec = load_spec_file(args.spec)
    fs, out = filesystem(spec.output.uri)
    return spec, fs, Layout(out, args.run_id, spec.output.format)


def _score(args) -> int:
    index = args.shard if args.shard is not None else os.environ.get("JOB_COMPLETION_INDEX")
    if index is None:
        _write_termination_log(termination_message(None, "no shard index: set JOB_COMPLETION_INDEX or --shard"))
        return EXIT_CONFIG
    spec, fs, layout = _context(args)
    plan = read_plan(fs, layout)
    if plan is None:
        _write_termination_log(termination_message(None, f"run {args.run_id} has no plan under {layout.root}"))
        return EXIT_CONFIG
    scratch = os.environ.get(SCRATCH_ENV) or tempfile.mkdtemp(prefix="parallelrun-")
    progress = ProgressFile(fs, layout.progress(int(index)))
    runner = ShardRunner(spec, plan, fs, layout, int(index), scratch=scratch, on_progress=progress.update,
                         wait_for_others=True)
    try:
        result = runner.run()
        progress.publish(runner.progress)
    except PermanentError as e:  # the shard cannot go on: its counts so far, and why
        detail = getattr(e, "traceback", "")
        log.error("%s\n%s", e, detail)
        _write_termination_log(termination_message(runner.counts, f"user code cannot load: {e}"
                                                   if isinstance(e, InitError) else str(e)))
        return e.exit_code
    _write_termination_log(termination_message(result.counts, result.threshold_reason))
    return EXIT_THRESHOLD if result.threshold_reason else EXIT_OK


class ProgressFile:
    """The shard's counts so far, published at most every PROGRESS_PUBLISH_SECONDS (the first at once)."""

    def __init__(self, fs, path: str):
        self.fs, self.path = fs, path
        self._last: float | None = None

    def update(self, shard: int, progress: ShardProgress) -> None:
        if self._last is None or time.monotonic() - self._last >= PROGRESS_PUBLISH_SECONDS:
            self.publish(progress)

    def publish(self, progress: ShardProgress) -> None:
        self._last = time.monotonic()
        try:
            write_atomic(self.fs, self.path, json.dumps(progress.to_dict()).encode())
        except Exception as e:  # noqa: BLE001 - a courtesy: the termination message has the counts
            log.warning("cannot publish progress to %s: %s", self.path, e)


def _plan(args) -> int:
    spec, fs, layout = _context(args)
    plan = ensure_plan(spec, fs, layout)
    print(json.dumps(plan.header()["totals"]))
    return EXIT_OK


def _merge(args) -> int:
    spec, fs, layout = _context(args)
    plan = read_plan(fs, layout)
    if plan is None:
        _write_termination_log(TerminationMessage(reason=f"run {args.run_id} has no plan").to_text())
        return EXIT_CONFIG
    try:
        summary = merge(spec, plan, fs, layout)
    except MergeError as e:  # the merge's message: its reason, no shard's counts
        _write_termination_log(TerminationMessage(reason=str(e)).to_text())
        return e.exit_code
    from .reportpage import publish  # numpy and pyarrow: imported by the merge, not by every scoring pod

    try:
        publish(fs, layout)
    except Exception as e:  # noqa: BLE001 - a courtesy: the run's outcome stands without its page
        log.warning("cannot write the run's report to %s: %s", layout.report_page, e)
    _write_termination_log(TerminationMessage(summary.counts, summary.reason, summary.status,
                                              summary.output).to_text())
    return EXIT_OK if summary.succeeded else EXIT_THRESHOLD


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["step"]:  # one container or component step of a pipeline (pipelines/steprun.py)
        from .pipelines.steprun import main as step_main

        return step_main(argv[1:])
    parser = argparse.ArgumentParser(prog="python -m parallelrun.runner", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=("plan", "score", "merge"))
    parser.add_argument("--spec", required=True, help="the BatchInferenceJob (YAML or JSON)")
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--shard", type=int, help="shard index (default: $JOB_COMPLETION_INDEX)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("azure").setLevel(logging.WARNING)  # azure-core logs every request at INFO
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind, so the workers are stopped
    try:
        return {"plan": _plan, "score": _score, "merge": _merge}[args.command](args)
    except PermanentError as e:  # an invalid spec, input that cannot be planned, storage refusing...
        _write_termination_log(termination_message(None, str(e)))
        return e.exit_code
    except Exception as e:  # a storage fault says so in one line; anything else is a crash
        fault = storage_error(e)
        if fault is None:
            raise
        _write_termination_log(termination_message(None, str(fault)))
        return fault.exit_code if isinstance(fault, PermanentError) else EXIT_RETRY  # Kubernetes retries the index


if __name__ == "__main__":
    sys.exit(main())
