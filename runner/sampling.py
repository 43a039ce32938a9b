"""Resource samples for the run report: each worker's CPU and memory, and its GPU's use.

A thread of the shard samples each worker process of its pool (and, as worker "pod", the
shard's own process, the workers and their zygote together) every SAMPLE_SECONDS, the
first time after FIRST_SAMPLE_SECONDS, reading /proc/<pid>/stat (CPU time) and
/proc/<pid>/statm (resident memory): a few small reads per process, no dependency.
With `nvidia-ml-py` installed (the `gpu` extra), NVML gives each worker's GPU's
utilization and the memory the worker holds on it (the device's used memory where NVML
does not list the process: in a container it lists the host's pids). A worker's GPU is
the first device of its CUDA_VISIBLE_DEVICES, taken as an NVML index
(CUDA_DEVICE_ORDER=PCI_BUS_ID makes the two orders agree).

Samples are written a piece at a time (records.ResourceSample lines, Layout.resource_piece):
the pod's current piece is rewritten whole every WRITE_SECONDS and when the shard ends,
and a new piece is begun once one holds PIECE_BYTES; the merge gathers every pod's
pieces into report/resources.csv. Where /proc is not there (macOS), only GPUs are sampled.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable

from .layout import Layout
from .records import ResourceSample
from .reportfiles import resources_csv, utc
from .storage import write_atomic

log = logging.getLogger("parallelrun")

SAMPLE_SECONDS = float(os.environ.get("PARALLELRUN_SAMPLE_SECONDS", "5"))
FIRST_SAMPLE_SECONDS = 1.0  # a shard that ends sooner has no samples
WRITE_SECONDS = 30.0
PIECE_BYTES = 2**20
_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096

Processes = Callable[[], list[tuple[int, int, str | None]]]  # (worker or -1, pid, CUDA_VISIBLE_DEVICES)


def cpu_and_rss(pid: int) -> tuple[float, int, float] | None:
    """(CPU seconds, user + system; resident bytes; seconds since boot when it started) of process
    `pid`; None when it is gone or has ended."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
        with open(f"/proc/{pid}/statm", "rb") as f:
            resident = int(f.read().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    fields = stat[stat.rindex(b")") + 2:].split()  # after the command name, which may hold spaces
    if fields[0] in (b"Z", b"X"):  # it has ended (not yet reaped): no memory left to sample
        return None
    return (int(fields[11]) + int(fields[12])) / _TICKS, resident * _PAGE, int(fields[19]) / _TICKS


def _uptime() -> float:
    """Seconds since boot, the clock of a process's start in /proc/<pid>/stat."""
    try:
        with open("/proc/uptime", "rb") as f:
            return float(f.read().split()[0])
    except (OSError, IndexError, ValueError):
        return 0.0


class Nvml:
    """NVML through pynvml (nvidia-ml-py): a device's utilization and the memory each process holds."""

    def __init__(self, pynvml):
        self.nvml = pynvml
        pynvml.nvmlInit()
        self.count = pynvml.nvmlDeviceGetCount()

    @classmethod
    def load(cls) -> Nvml | None:
        """NVML where nvidia-ml-py is installed and a driver answers; else None."""
        try:
            import pynvml
        except ImportError:
            return None
        try:
            return cls(pynvml)
        except Exception as e:  # noqa: BLE001 - pynvml's NVMLError (no driver, no device): no GPU columns
            log.debug("no GPU samples: %s", e)
            return None

    def device(self, index: int) -> tuple[float, int, dict[int, int]] | None:
        """(utilization %, used bytes, pid → bytes it holds) of device `index`; None when NVML cannot tell."""
        nvml = self.nvml
        try:
            handle = nvml.nvmlDeviceGetHandleByIndex(index)
            utilization = float(nvml.nvmlDeviceGetUtilizationRates(handle).gpu)
            used = int(nvml.nvmlDeviceGetMemoryInfo(handle).used)
            held = {p.pid: int(p.usedGpuMemory or 0) for p in nvml.nvmlDeviceGetComputeRunningProcesses(handle)}
        except Exception:  # noqa: BLE001 - pynvml's NVMLError: this sample goes without the GPU's figures
            return None
        return utilization, used, held

    def close(self) -> None:
        try:
            self.nvml.nvmlShutdown()
        except Exception:  # noqa: BLE001 - pynvml's NVMLError: nothing left to release
            pass


def gpu_index(visible: str | None) -> int | None:
    """The NVML index of the first device in CUDA_VISIBLE_DEVICES; None without one (or a UUID)."""
    first = (visible or "").split(",")[0].strip()
    return int(first) if first.isdigit() else None


class ResourceSampler:
    """Samples the processes `processes()` names, for shard `shard` on host `pod`, on a thread
    of its own from start() to stop(); its pieces are named by `token` (the pod attempt).
    NVML is `nvml`, else loaded (Nvml.load) once a worker has CUDA_VISIBLE_DEVICES: a CPU job
    does not even import it."""

    def __init__(self, fs, layout: Layout, shard: int, pod: str, token: str, processes: Processes,
                 nvml: Nvml | None = None, interval: float | None = None):
        self.fs, self.layout, self.shard, self.pod, self.token = fs, layout, shard, pod, token
        self.processes = processes
        self.nvml = nvml
        self._nvml_tried = nvml is not None
        self.interval = SAMPLE_SECONDS if interval is None else interval
        self.cpu_seconds = 0.0  # what the sampling thread used, for its cost (stop() logs it)
        self._lines: list[str] = []  # the current piece's lines
        self._bytes = 0
        self._piece = 0
        self._before: dict[int, tuple[float, float]] = {}  # pid → (CPU seconds, when), at its last sample
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = 0.0

    def start(self) -> ResourceSampler:
        self._started = time.monotonic()
        self._thread = threading.Thread(target=self._sample_on, name=f"parallelrun-sampler-{self.shard}",
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop sampling and write what is held (a failed write is logged: the report is not worth a run)."""
        if self._thread is None:
            return
        self._stopping.set()
        self._thread.join()
        self._thread = None
        self._write()
        wall = time.monotonic() - self._started
        log.debug("shard %d: sampling resources took %.3f CPU s over %.1f s (%.2f%% of a core)",
                  self.shard, self.cpu_seconds, wall, 100 * self.cpu_seconds / max(wall, 1e-9))
        if self.nvml is not None:
            self.nvml.close()

    def _sample_on(self) -> None:
        written = time.monotonic()
        if self._stopping.wait(min(FIRST_SAMPLE_SECONDS, self.interval)):  # the workers start meanwhile
            return
        while True:
            began = time.thread_time()
            self.sample()
            if time.monotonic() - written >= WRITE_SECONDS:
                self._write()
                written = time.monotonic()
            self.cpu_seconds += time.thread_time() - began
            if self._stopping.wait(self.interval):
                return

    def sample(self) -> list[ResourceSample]:
        """One sample of every process, kept for the next write; returns it."""
        now, at = time.monotonic(), utc(time.time())
        try:
            processes = self.processes()
        except Exception:  # noqa: BLE001 - the pool changed under this thread: the next sample sees it
            return []
        devices: dict[int, tuple[float, int, dict[int, int]] | None] = {}
        samples = []
        total_cpu, total_rss, total_gpu, pids = 0.0, 0, None, set()
        for worker, pid, visible in [(-2, os.getpid(), None), *processes]:
            used = cpu_and_rss(pid)
            if used is None:
                continue
            pids.add(pid)
            cpu = self._cpu(pid, used, now)
            total_cpu += cpu
            total_rss += used[1]
            if worker < 0:
                continue
            if visible and not self._nvml_tried:
                self._nvml_tried, self.nvml = True, Nvml.load()
            nvml = self.nvml
            gpu = gpu_index(visible) if nvml is not None else None
            utilization = memory = None
            if nvml is not None and gpu is not None:
                if gpu not in devices:
                    devices[gpu] = nvml.device(gpu)
                if (device := devices[gpu]) is not None:
                    utilization, used_bytes, held = device
                    memory = held.get(pid, used_bytes)
                    total_gpu = (total_gpu or 0) + held.get(pid, 0)
            samples.append(ResourceSample(at, self.pod, self.shard, str(worker), pid, round(cpu, 1), used[1],
                                          gpu, utilization, memory))
        if samples:
            samples.append(ResourceSample(at, self.pod, self.shard, "pod", os.getpid(), round(total_cpu, 1),
                                          total_rss, None, None, total_gpu))
        self._before = {pid: v for pid, v in self._before.items() if pid in pids}
        text = resources_csv(samples)
        self._lines.append(text)
        self._bytes += len(text)
        return samples

    def _cpu(self, pid: int, used: tuple[float, int, float], now: float) -> float:
        """Percent of one core process `pid` used since its last sample (since it started, at its first)."""
        seconds = used[0]
        before = self._before.get(pid)
        self._before[pid] = (seconds, now)
        if before is None:
            before = (0.0, now - max(_uptime() - used[2], 0.0))
        return 100 * (seconds - before[0]) / max(now - before[1], 1e-3)

    def _write(self) -> None:
        if not self._lines:
            return
        lines = self._lines
        try:
            write_atomic(self.fs, self.layout.resource_piece(self.shard, self.token, self._piece),
                         (resources_csv((), header=True) + "".join(lines)).encode())
        except Exception as e:  # noqa: BLE001 - any storage fault: the samples wait for the next write
            log.warning("shard %d: resource samples not written: %s", self.shard, e)
            return
        if self._bytes >= PIECE_BYTES:
            self._lines, self._bytes, self._piece = [], 0, self._piece + 1
