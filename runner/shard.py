"""One shard of a run: what a scoring pod does (and each node of local mode).

Fetches the model, side inputs and code once, resumes the chunks an earlier attempt
claimed, then claims chunks (claims.py: its own range first, then the tails of the
others) and feeds their mini-batches to the worker pool, retries failed attempts up to `runMaxTry`,
commits finished mini-batches a group at a time (commits.py: a succeeded one once its
part is written), holds the counts against the thresholds, and finally writes the
shard's result for the merge.
"""

from __future__ import annotations

import bisect
import json
import logging
import os
import time
from collections import deque
from collections.abc import Callable

from .accounting import Counts, spec_threshold_exceeded
from .claims import Chunk, Claims
from .commits import CommitLog, read_commits
from .contract import CODE_DIR, CODE_DIR_ENV, PermanentError
from .layout import Layout
from .planning import MiniBatch, Plan, changed_sources, plan_lines
from .pool import Outcome, Placed, Returned, WorkerPool
from .preprocess import processes_of
from .readers import Reader
from .records import DoneRecord, ErrorLine, ShardProgress, ShardResult
from .reportfiles import attempt_row, cell, short_error
from .resources import available_cpus, gpu_assignment, process_count
from .sampling import ResourceSampler
from .sideoutputs import publish
from .spec import OPENAI_SETTINGS_ENV, JobSpec
from .storage import fetch, filesystem_modules, write_atomic
from .worker import WorkerConfig

log = logging.getLogger("parallelrun")

# What the pool's zygote imports for its workers, by input type (zygote.py): each worker
# then pays for none of it. A files job's workers need our modules alone.
PRELOAD = {"files": (), "tabular": ("pandas", "pyarrow", "pyarrow.compute", "pyarrow.csv", "pyarrow.parquet")}


class ConfigError(PermanentError, RuntimeError):
    """The job cannot start for a reason retrying will not fix (missing entry script, model...)."""


class ShardRunner:
    def __init__(self, spec: JobSpec, plan: Plan, fs, layout: Layout, index: int, *, scratch: str,
                 log_dir: str | None = None, on_progress: Callable[[int, ShardProgress], None] | None = None,
                 should_stop: Callable[[], bool] | None = None, pool: WorkerPool | None = None,
                 wait_for_others: bool = False):
        """`pool`: workers started before the plan was ready (start_pool); else the shard starts them.
        `wait_for_others`: once idle, wait while other pods still work, to take over the chunks of
        one that is lost (pods; local shards are threads of one process, lost only with it).
        `on_progress` gets the shard's live progress after each commit (copy what you keep)."""
        self.spec, self.plan, self.fs, self.layout, self.index = spec, plan, fs, layout, index
        self.wait_for_others = wait_for_others
        self._pool = pool
        self.scratch = scratch
        self.log_dir = log_dir
        self.on_progress = on_progress or (lambda index, counts: None)
        self.should_stop = should_stop or (lambda: False)
        self.counts = Counts()
        self.progress = ShardProgress(self.counts)  # its counts, and each held chunk's
        self.resumed = Counts()
        self._reader = Reader(plan, scratch)
        self._log = CommitLog(fs, layout, index)
        self._awaiting: dict[int, tuple[MiniBatch, DoneRecord]] = {}  # succeeded, its part not yet written
        self._urgent = False  # something staged that should not wait for its group to fill
        self._side: set[int] = set()  # succeeded mini-batches with side outputs, published once committed
        self._lines: dict[int, str] = {}  # each mini-batch's line of the plan
        self._claims = Claims(fs, layout, plan, index)
        self._pending: deque[MiniBatch] = deque()  # held, not yet handed to a worker
        self._drained = False  # nothing is left to claim
        self._committed: set[int] = set()  # of the chunks it holds
        self._chunk_firsts = [c.first for c in self._claims.chunks]  # in plan order: a mini-batch's chunk by bisection
        self._repairing = fs.exists(layout.repair_marker)
        self._plan_lines: dict[int, list[str]] = {}  # a shard range's lines of the plan, once read
        self._chunk_firsts = [c.first for c in self._claims.chunks]
        self._pod_cell = cell(self._claims.pod)
        self._retried: dict[int, list[str]] = {}  # report lines of the failed attempts of mini-batches not yet staged
        self._scoring: WorkerPool | None = None  # the pool at work, whose processes are sampled

    def _check_sources(self) -> None:
        """Every shard scores with the model and side inputs the run was planned with."""
        changed = changed_sources(self.spec, self.plan.sources)
        if changed:
            raise ConfigError(f"{' and '.join(changed)} changed since run {self.layout.run_id} was planned; "
                              "scoring with it would mix versions: start a new run (--fresh in local mode)")

    # -- the chunks it holds --------------------------------------------------------

    def _take(self, chunk: Chunk, committed: dict[int, DoneRecord] | None, count: bool) -> None:
        """Queue the mini-batches of a chunk this pod now holds, less those in `committed` (counted
        when `count`: an earlier attempt of this index committed them)."""
        a, b = chunk.first, chunk.stop
        if self.plan.mini_batches is not None:  # planned in this process: taken as they are
            made, lines = self.plan.mini_batches[a:b], plan_lines(self.plan.mini_batches, a, b)
        else:
            shard = self.plan.shards[chunk.shard]
            if chunk.shard not in self._plan_lines:
                text = self.fs.cat_file(self.layout.plan_shard(chunk.shard)).decode()
                self._plan_lines[chunk.shard] = [line for line in text.splitlines() if line.strip()]
            lines = self._plan_lines[chunk.shard][a - shard.first:b - shard.first]
            made = MiniBatch.many_from_json(lines)
        counts = self.progress.chunks[a] = Counts()
        for mb, line in zip(made, lines):
            if committed is not None and mb.id in committed:
                self._committed.add(mb.id)
                counts.add(committed[mb.id].counts)  # the chunk's, whoever committed it
                if count:
                    self.counts.add(committed[mb.id].counts)
            else:
                self._lines[mb.id] = line
                self._pending.append(mb)

    def _resume(self) -> None:
        """The chunks an earlier attempt of this index claimed come first, less what it committed."""
        resumed = self._claims.start()
        if not resumed:
            return
        committed = read_commits(self.fs, self.layout, (i for c in resumed for i in range(c.first, c.stop)))
        for chunk in resumed:
            self._take(chunk, committed, count=True)
        if self.counts.mini_batches:
            self.on_progress(self.index, self.progress)
            log.info("shard %d: resuming, %d mini-batches already committed", self.index, self.counts.mini_batches)

    def _refill(self, low: int) -> None:
        """Claim chunks while fewer than `low` of this pod's mini-batches wait."""
        while len(self._pending) < low and not self._drained:
            claimed = self._claims.next()
            if claimed is None:
                self._drained = True
                return
            chunk, taken_over = claimed
            # A plan made before chunks: its shard's earlier attempts committed without claims. A run
            # being repaired: its chunks are claimed anew, all but the failed mini-batches committed.
            before_chunks = not self.plan.chunk_mini_batches and chunk.shard == self.index
            counted = before_chunks or self._repairing
            committed = read_commits(self.fs, self.layout, range(chunk.first, chunk.stop)) \
                if taken_over or counted else None
            self._take(chunk, committed, count=counted)

    # -- the loop --------------------------------------------------------------

    def run(self) -> ShardResult:
        sampler = ResourceSampler(self.fs, self.layout, self.index, self._claims.pod, self._claims.token,
                                  self._processes).start()
        try:
            return self._run()
        finally:
            sampler.stop()
            if self._pool is not None:  # unused when nothing was left to do
                self._pool.close()

    def _processes(self) -> list[tuple[int, int, str | None]]:
        pool = self._scoring or self._pool
        return pool.processes() if pool is not None else []

    def _run(self) -> ShardResult:
        done = False
        try:
            self._resume()
            self.resumed = Counts(**vars(self.counts))  # committed by an earlier attempt
            exceeded = self._exceeded()
            while not exceeded:
                exceeded = self._score()
                # Idle: wait while others still work, and take over the chunks of one that falls silent.
                if exceeded or self.should_stop() or not self.wait_for_others \
                        or not self._claims.wait(self.should_stop):
                    break
                self._drained = False
            done = exceeded is None and not self.should_stop()
        finally:
            self._claims.finish(done, lambda c: not any(i in self._committed for i in range(c.first, c.stop)))
        if self._claims.stolen:
            log.info("shard %d: %d chunk(s) of other pods' ranges scored here (taken from their tails or over "
                     "from silent pods)", self.index, self._claims.stolen)
        result = ShardResult(self.index, self.counts, exceeded)  # the merge reads the rest from the commit records
        write_atomic(self.fs, self.layout.shard_result(self.index), json.dumps(result.to_dict()).encode())
        return result

    def _score(self) -> str | None:
        """Run what this pod holds and can claim to the end (None), or until a threshold is
        exceeded (why) or the run stops."""
        try:
            return self._score_all()
        finally:
            self._commit_staged()  # what is staged is whole: committed even when the run stops

    def _score_all(self) -> str | None:
        attempts: dict[int, int] = {}
        pending = self._pending
        self._refill(1)
        if not pending:
            return None
        self._check_sources()
        if self._pool is None:
            pool = start_pool(self.spec, self.layout, self.index, scratch=self.scratch, log_dir=self.log_dir,
                              plan_header=self.plan.header(), max_workers=self.plan.total_mini_batches)
        else:
            pool = self._pool
            pool.plan(self.plan.header(), self.plan.total_mini_batches)
        low = 2 * process_count(self.spec)  # enough waiting to keep every worker's queue filled
        self._pool = None  # a later round (chunks taken over after waiting) starts its own
        self._scoring = pool
        with pool:
            while True:
                self._refill(low)
                if not pending and not pool.busy:
                    break
                if self.should_stop():
                    pool.close(graceful=False)
                    return None
                pool.feed(pending, lambda mb: self._lines[mb.id])
                for event in pool.wait(timeout=self._log.max_seconds):
                    if isinstance(event, Placed):
                        _, done = self._awaiting.pop(event.id)
                        done.part = (event.file, event.offset, event.length)
                        self._stage(done)
                        continue
                    mb = event.mini_batch
                    if isinstance(event, Returned):  # its worker was lost: run it again, no attempt spent
                        attempts[mb.id] = attempts.get(mb.id, 0) - event.ran
                        self._awaiting.pop(mb.id, None)
                        pending.appendleft(mb)
                        continue
                    attempts[mb.id] = attempts.get(mb.id, 0) + 1
                    if event.error is None or not event.retry or attempts[mb.id] >= self.spec.run_max_try:
                        if event.error is not None:
                            log.error("mini-batch %d failed after %d attempts: %s", mb.id, attempts[mb.id],
                                      event.error)
                        if self._finish(mb, event, attempts[mb.id]):  # failed items: the thresholds count them now
                            self._commit_staged()
                            if exceeded := self._exceeded():
                                pool.close(graceful=False)
                                return exceeded
                    else:
                        log.warning("mini-batch %d attempt %d/%d failed: %s", mb.id, attempts[mb.id],
                                    self.spec.run_max_try, event.error)
                        items = event.items if event.items is not None else mb.items or 0
                        self._retried.setdefault(mb.id, []).append(
                            self._attempt_row(mb, event, attempts[mb.id], items, 0, 0, "retried", event.error))
                        pending.appendleft(mb)
                if self._log.due() or self._urgent:
                    self._commit_staged()
        return None

    def _exceeded(self) -> str | None:
        return spec_threshold_exceeded(self.spec, self.counts, self.plan.total_mini_batches)

    def _finish(self, mb: MiniBatch, outcome: Outcome, attempts: int) -> bool:
        """A mini-batch's last attempt ended: its record is staged, once its part is written if it has
        one. Returns whether it has failed items."""
        # The plan's count where it has one: rows that vanished from the input are failed items.
        items = mb.items if mb.items is not None else outcome.items if outcome.items is not None else self._items_of(mb)
        if outcome.error is not None:
            done = DoneRecord(mb.id, "failed", items, succeeded=0, failed=items, attempts=attempts,
                              errors=self._error_records(mb, items, outcome.error, outcome.traceback, attempts),
                              schema=outcome.schema)
        else:
            # One result per item: fewer are failed items (the worker fails an attempt that returned more).
            # Many: an item succeeds with its mini-batch, whatever number of rows it gave. Items whose
            # preprocess() raised are failed, each with its error; run() had the others, and those it
            # named as failed (outputs.Results) fail whatever rows it gave.
            ran = items - len(outcome.rejected)
            named = outcome.item_errors
            succeeded = min(ran if self.spec.output.results_per_item == "many" else outcome.returned,
                            ran - len(named))
            done = DoneRecord(mb.id, "succeeded", items, succeeded=succeeded, failed=items - succeeded,
                              attempts=attempts, schema=outcome.schema)
            done.errors = [self._error_record(mb, self.plan.absolute(mb.paths[r.item]), 1, attempts, r.error,
                                              r.traceback) for r in outcome.rejected]
            done.errors += [self._error_record(mb, item, 1, attempts, error, None) for item, error in named]
            unnamed = ran - succeeded - len(named)
            if unnamed:  # which items failed is known only when none succeeded: then each file is named
                error = f"run() returned {outcome.returned:,} results for {ran:,} items"
                rejected = {r.item for r in outcome.rejected}
                done.errors += self._error_records(mb, ran, error, None, attempts, rejected) \
                    if not succeeded and not named else [self._error_record(mb, None, unnamed, attempts, error, None)]
        first_error = outcome.error or (done.errors[0].error if done.errors else None)
        done.report = "".join(self._retried.get(mb.id, ())) + self._attempt_row(
            mb, outcome, attempts, items, done.succeeded, done.failed, done.status, first_error)
        if outcome.side_outputs and outcome.error is None:
            self._side.add(mb.id)
        if outcome.part_pending:
            self._awaiting[mb.id] = (mb, done)
        else:
            self._stage(done)
        return done.failed > 0

    def _stage(self, done: DoneRecord) -> None:
        """Committed with its group: at once with a worker's group of parts, else when the
        group is full or old (or at once, by the caller, when it has failed items)."""
        self._log.stage(done)
        self._retried.pop(done.id, None)
        self._urgent = self._urgent or done.part is not None

    def _attempt_row(self, mb: MiniBatch, outcome: Outcome, attempt: int, items: int, succeeded: int, failed: int,
                     status: str, error: str | None) -> str:
        """The attempt's line of the run report (records.AttemptLine)."""
        start, seconds, run_seconds, read_seconds = outcome.timing or (time.time(), 0.0, None, None)
        chunk = self._chunk_firsts[bisect.bisect_right(self._chunk_firsts, mb.id) - 1]
        worker = outcome.worker if outcome.worker >= 0 else None
        return attempt_row(mb.id, chunk, self.index, self._pod_cell, worker, attempt, start, seconds, run_seconds,
                           read_seconds, items, succeeded, failed, status, short_error(error))

    def _commit_staged(self) -> None:
        """Commit what is staged; it counts from now on."""
        if self._log.count:
            self._claims.check()
        committed = self._log.write()
        for done in committed:
            self._count(done)
        if self._side:
            publish(self.fs, self.layout, [d.id for d in committed if d.id in self._side])
            self._side.difference_update(d.id for d in committed)
        self._urgent = False
        if committed:
            self.on_progress(self.index, self.progress)

    def _count(self, done: DoneRecord) -> None:
        self._committed.add(done.id)
        self.counts.add(done.counts)
        self.progress.chunks[self._chunk_firsts[bisect.bisect_right(self._chunk_firsts, done.id) - 1]].add(done.counts)

    def _items_of(self, mb: MiniBatch) -> int:
        """Items of a mini-batch that failed before it was read (a crash, a timeout)."""
        if mb.items is not None:
            return mb.items
        try:
            return self._reader.count_lines(mb)
        except OSError as e:
            log.error("mini-batch %d: cannot count its lines: %s", mb.id, e)
            return 0

    def _source(self, mb: MiniBatch) -> dict:
        if mb.files is not None and mb.key is None:
            return {"files": [self.plan.absolute(f) for f in mb.files]}
        source = ({"file": self.plan.absolute(mb.file)} if mb.file is not None
                  else {"files": [self.plan.absolute(f) for f in mb.paths]})
        for name in ("rows", "bytes", "key"):
            if getattr(mb, name) is not None:
                source[name] = getattr(mb, name)
        return source

    def _error_records(self, mb: MiniBatch, items: int, error: str, tb: str | None, attempts: int,
                       skip: frozenset[int] | set[int] = frozenset()) -> list[ErrorLine]:
        """errors.jsonl lines: one per failed file (but those at the indexes in `skip`); one per
        mini-batch of rows (its row range)."""
        if self.plan.input_type == "files":
            return [self._error_record(mb, self.plan.absolute(f), 1, attempts, error, tb)
                    for k, f in enumerate(mb.paths) if k not in skip]
        return [self._error_record(mb, None, items, attempts, error, tb)]

    def _error_record(self, mb: MiniBatch, item: str | None, items: int, attempts: int, error: str,
                      tb: str | None) -> ErrorLine:
        """One errors.jsonl line. `item` is the failed file (files input), `items` how many failed
        items the line stands for."""
        return ErrorLine(mb.id, item, self._source(mb), items, attempts, error, tb)


def start_pool(spec: JobSpec, layout: Layout, index: int, *, scratch: str, log_dir: str | None,
               plan_header: dict | None, max_workers: int | None = None) -> WorkerPool:
    """Shard `index`'s workers. Without `plan_header` they start before the run is planned:
    they import the entry script and run init() meanwhile (WorkerPool.plan completes them)."""
    return WorkerPool(worker_configs(spec, layout, index, scratch, log_dir, plan_header),
                      spec.run_invocation_timeout, init_timeout=spec.init_timeout, max_workers=max_workers,
                      preload=PRELOAD[spec.input.type] + preload_storage(spec))


def preload_storage(spec: JobSpec) -> tuple[str, ...]:
    """What the workers' filesystems of the input and output import (adlfs for Azure Blob)."""
    uris = [uri for uri in (spec.input.uri, spec.input.manifest, spec.output.uri) if uri]
    return tuple(dict.fromkeys(module for uri in uris for module in filesystem_modules(uri)))


def worker_configs(spec: JobSpec, layout: Layout, index: int, scratch: str, log_dir: str | None,
                   plan_header: dict | None) -> list[WorkerConfig]:
    workers = process_count(spec)
    script = _resolve_code(spec, scratch)
    env = _shared_env(spec, layout, index, scratch)
    threads = str(max(1, available_cpus() // workers))
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        if var not in os.environ:  # N processes × all cores of BLAS threads would oversubscribe
            env[var] = threads
    gpus = (gpu_assignment(workers, spec.gpu.count, os.environ.get("CUDA_VISIBLE_DEVICES"))
            if spec.gpu else None)
    in_flight = spec.mini_batches_in_flight  # with calls in flight, reads ahead at least as many
    prefetch = max(spec.prefetch_mini_batches, in_flight) if in_flight > 1 else spec.prefetch_mini_batches
    configs = []
    for k in range(workers):
        worker_env = dict(env, PARALLELRUN_WORKER_INDEX=str(k))
        if gpus is not None:
            worker_env["CUDA_VISIBLE_DEVICES"] = gpus[k]
        configs.append(WorkerConfig(
            worker=f"{index}.{k}", env=worker_env, entry_script=script,
            arguments=list(spec.arguments), logging_level=spec.logging_level,
            plan=plan_header, scratch=os.path.join(scratch, f"worker-{k}"),
            output_uri=spec.output.uri, run_id=layout.run_id,
            output_format=spec.output.format, append_row=spec.output.action == "appendRow",
            many_results=spec.output.results_per_item == "many",
            prefetch=prefetch,
            in_flight=in_flight,
            preprocess=processes_of(spec.preprocess_processes, workers, k),
            log_path=os.path.join(log_dir, f"shard-{index}-worker-{k}.log") if log_dir else None,
        ))
    return configs


def _resolve_code(spec: JobSpec, scratch: str) -> str:
    code = spec.code
    if code.builtin:
        return os.path.join(os.path.dirname(os.path.abspath(__file__)), code.entry_script)
    if code.uri:
        try:
            directory = fetch(code.uri, os.path.join(scratch, "code"))
        except FileNotFoundError:
            raise ConfigError(f"spec.code.uri: {code.uri} does not exist; give the folder that holds "
                              f"{code.entry_script}") from None
        if os.path.isfile(directory):
            directory = os.path.dirname(directory)
    elif code.config_map:
        directory = os.environ.get(CODE_DIR_ENV, CODE_DIR)
    else:
        directory = os.getcwd()  # baked into the image, relative to its working directory
    script = os.path.join(directory, code.entry_script)
    if not os.path.isfile(script):
        raise ConfigError(f"spec.code.entryScript: {code.entry_script} not found in {directory}")
    return os.path.abspath(script)


def _shared_env(spec: JobSpec, layout: Layout, index: int, scratch: str) -> dict:
    """Paths of the model and side inputs, fetched once for the whole shard."""
    env = {"PARALLELRUN_SHARD_INDEX": str(index), "PARALLELRUN_RUN_ID": layout.run_id}
    if spec.code.openai:  # the builtin scorer's settings, with this worker's share of the job's limits
        share = spec.code.openai.share(spec.node_count * process_count(spec))
        env[OPENAI_SETTINGS_ENV] = json.dumps(share.to_dict())
    for variable in spec.environment.get("env") or []:  # a pod has them from its template; local mode's workers too
        if isinstance(variable, dict) and isinstance(variable.get("name"), str) and "value" in variable:
            env.setdefault(variable["name"], str(variable["value"]))
    try:
        if spec.model_uri:
            model = fetch(spec.model_uri, os.path.join(scratch, "model"))
            env["PARALLELRUN_MODEL_DIR"] = env["AZUREML_MODEL_DIR"] = model
        for side in spec.side_inputs:
            env[side.env_var] = fetch(side.uri, os.path.join(scratch, "side", side.name))
    except FileNotFoundError as e:
        raise ConfigError(str(e)) from e
    return env
