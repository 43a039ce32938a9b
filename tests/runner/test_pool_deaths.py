"""A worker that dies between two messages of the pool is buried and replaced, never a crash of the shard."""

import os
import signal
import time
from collections import deque
from types import SimpleNamespace

from parallelrun.runner.layout import Layout
from parallelrun.runner.pool import Outcome, Returned, WorkerPool
from parallelrun.runner.shard import worker_configs
from parallelrun.runner.spec import load_spec_file

SCRIPT = """
def init():
    pass

def run(mini_batch):
    return list(mini_batch)
"""


def test_feeding_a_worker_that_died_since_it_reported_buries_it(job, tmp_path):
    job.script(SCRIPT)
    spec = load_spec_file(str(job.write(processCountPerNode=1)))
    configs = worker_configs(spec, Layout(str(job.output), "r"), 0, str(tmp_path / "scratch"), None, {})
    with WorkerPool(configs, 60, init_timeout=60) as pool:
        worker = pool._workers[0]
        deadline = time.monotonic() + 60
        while not worker.ready:
            assert time.monotonic() < deadline, "the worker never became ready"
            pool.wait(0.05)
        os.kill(worker.process.pid, signal.SIGKILL)
        worker.process.join(10)
        pending = deque(SimpleNamespace(id=k) for k in range(3))
        pool.feed(pending, line_of=lambda mb: "{}")  # its pipe is closed: BrokenPipeError before the fix
        events = []
        while len([e for e in events if isinstance(e, (Returned, Outcome))]) < 3 and time.monotonic() < deadline:
            events += pool.wait(0.05)
        handed_back = sorted(e.mini_batch.id for e in events if isinstance(e, (Returned, Outcome)))
        assert handed_back == [0, 1, 2]
        assert pool._workers[0] is not worker  # replaced
