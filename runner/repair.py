"""Repair runs: `parallelrun run JOB --retry-failed` (`spec.retryFailed`) reruns only the
failed mini-batches of a finished run, with the script and model as they are now, and
splices their results into the same ordered output.

A run with failed items keeps its parts and commit records after its merge (merge.py).
A repair takes the job's latest finished run under `output.uri` (a local run's or a
BatchInferenceJob's of that name: `<name>-<10 hex>` or `<name>-<8 hex of its uid>`), removes the commit
records of its mini-batches with failed items, records the model and side inputs as
they are now in its plan, and hands the run back to the shards: they resume, so they
score exactly those mini-batches. A mini-batch is rerun whole, its earlier rows
replaced: an output row does not say which item it came from. The merge then writes a
new version of the output in plan order (the old one kept as `<fileName>.previous`),
and errors.jsonl lists only what still fails. Local mode (local.py) and the operator
(operator/jobs) drive it alike: repair_target, prepare_repair, then the run's shards and merge.
"""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Mapping

from .commits import commit_files, commit_lines, read_commits
from .contract import PermanentError
from .layout import REPAIR_MARKER, Layout
from .merge import PREVIOUS_SUFFIX
from .planning import read_plan, source_versions
from .records import RunSummary
from .spec import JobSpec
from .storage import join, write_atomic


class RepairError(PermanentError, RuntimeError):
    """There is no run to repair, or it cannot be repaired."""




def repair_target(fs, out: str, spec: JobSpec) -> tuple[str, RunSummary | None]:
    """(run id, summary) of the run to repair: a repair cut short (its marker, no summary),
    else the job's latest finished run (summary None: the repair was cut short)."""
    runs, interrupted = [], []
    for path in fs.glob(join(out, "_parallelrun", f"{spec.name}-*", "*.json")):
        run_id, name = posixpath.basename(posixpath.dirname(path)), posixpath.basename(path)
        if not re.fullmatch(rf"{re.escape(spec.name)}-([0-9a-f]{{10}}|[0-9a-f]{{8}})", run_id):  # another job's
            continue
        if name == "summary.json":
            with fs.open(path, "rb") as f:
                runs.append((run_id, RunSummary.from_dict(json.load(f))))
        elif name == REPAIR_MARKER:
            interrupted.append(run_id)
    finished = {run_id for run_id, _ in runs}
    cut_short = [run_id for run_id in interrupted if run_id not in finished]
    if cut_short:
        return cut_short[0], None
    if not runs:
        raise RepairError(f"--retry-failed: no finished run of {spec.name} under {spec.output.uri} to repair; "
                          "run the job first")
    return max(runs, key=lambda run: run[1].finished_at)


def prepare_repair(spec: JobSpec, fs, layout: Layout, summary: RunSummary | None,
                   env: Mapping[str, str] | None = None) -> bool:
    """Make the run ready for its shards to resume with its failed mini-batches to do; False
    when it has no failed item (nothing to repair). Each step can be done again: a repair cut
    short is prepared again from where it stopped, the summary removed last."""
    if summary is not None and not summary.counts.items_failed and not summary.counts.mini_batches_failed:
        return False
    plan = read_plan(fs, layout)
    if plan is None or not (fs.exists(layout.all_commits_dir) or fs.exists(layout.done_dir)):
        raise RepairError(f"--retry-failed: run {layout.run_id} kept no parts (it finished before repair runs "
                          "were possible); run the job again whole (--fresh)")
    write_atomic(fs, layout.repair_marker, json.dumps({"repairs": layout.run_id}).encode())
    _drop_failed(fs, layout, range(plan.total_mini_batches))
    plan.sources = source_versions(spec, env)  # scored with the model and side inputs as they are now
    write_atomic(fs, layout.plan_header, json.dumps(plan.header(), indent=1).encode())
    final = layout.final_output(spec.output.file_name)
    if fs.exists(final):
        fs.mv(final, final + PREVIOUS_SUFFIX, recursive=fs.isdir(final))
    # Every chunk is claimed anew; a claim then skips what is committed (ShardRunner, repairing).
    for folder in (join(layout.root, "shards"), join(layout.root, "progress"), layout.claims_dir):
        if fs.exists(folder):
            fs.rm(folder, recursive=True)
    for path in (layout.errors, layout.summary):
        if fs.exists(path):
            fs.rm(path)
    return True


def _drop_failed(fs, layout: Layout, ids) -> None:
    """Rewrite every pod's commit files without the records of mini-batches with failed items."""
    files = commit_files(fs, layout)
    failed = {i for i, record in read_commits(fs, layout, ids, files).items() if record.failed}
    if not failed:
        return
    for path, in_file in files.items():
        if not any(record.id in failed for record in in_file):
            continue
        kept = [line for line, record in zip(commit_lines(fs, path), in_file) if record.id not in failed]
        if kept:
            write_atomic(fs, path, ("\n".join(kept) + "\n").encode())
        else:
            fs.rm(path)
    if fs.exists(layout.done_dir):  # one record a file (runs before group commits)
        for path in fs.ls(layout.done_dir, detail=False):
            name = posixpath.basename(path)
            if name.endswith(".json") and name[:-5].isdigit() and int(name[:-5]) in failed:
                fs.rm(path)
