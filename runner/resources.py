"""What this pod or machine lends a shard: its CPUs (the default process count) and its GPUs.

Counted where the shard runs, not where it was planned: a pod's CPU limit (its cgroup
quota) and CPU affinity, not the host's count; the devices in CUDA_VISIBLE_DEVICES.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .spec import JobSpec


def available_cpus() -> int:
    """CPUs this process may use: its affinity, capped by a cgroup CPU quota (a pod's limit)."""
    count = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    quota = None
    try:
        with open("/sys/fs/cgroup/cpu.max") as f:  # cgroup v2: "max 100000" or "200000 100000"
            limit, period = f.read().split()
            quota = None if limit == "max" else int(limit) / int(period)
    except (OSError, ValueError):
        try:
            with open("/sys/fs/cgroup/cpu/cpu.cfs_quota_us") as q, open("/sys/fs/cgroup/cpu/cpu.cfs_period_us") as p:
                limit_us = int(q.read())
                quota = None if limit_us <= 0 else limit_us / int(p.read())
        except (OSError, ValueError):
            pass
    if quota:
        count = min(count, max(1, int(quota + 0.999)))
    return max(1, count)


def gpu_assignment(workers: int, gpus: int, visible: str | None = None) -> list[str]:
    """CUDA_VISIBLE_DEVICES for each worker: the pod's GPUs split evenly, or shared
    round-robin when there are more workers than GPUs."""
    devices = [d.strip() for d in visible.split(",") if d.strip()] if visible else [str(i) for i in range(gpus)]
    if not devices:
        return ["" for _ in range(workers)]
    if workers >= len(devices):
        return [devices[k % len(devices)] for k in range(workers)]
    return [",".join(devices[len(devices) * k // workers:len(devices) * (k + 1) // workers]) for k in range(workers)]


def process_count(spec: JobSpec) -> int:
    """The worker processes of one shard: processCountPerNode, else one per GPU of the pod, else per CPU."""
    if spec.process_count_per_node:
        return spec.process_count_per_node
    return spec.gpu.count if spec.gpu else available_cpus()
