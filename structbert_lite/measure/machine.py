"""What a number was measured on, and how disturbed the machine was while it was measured.

Torch-free and import-light (the worker reads these in every fresh process):

- `machine_info`: CPU model and the instruction-set flags that decide the kernels, core counts, load average;
- `library_versions`: installed versions from package metadata (nothing is imported);
- `peak_rss_mb`: this process's VmHWM;
- `ContentionMeter`: run-queue wait of this process's threads (``/proc/self/task/*/schedstat``) and the
  machine's steal time (``/proc/stat``) over the timed blocks — the direct evidence of contention: a thread
  that wants a core and waits for one is exactly what skews a latency figure.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import resource
import sys
from importlib import metadata
from pathlib import Path
from typing import Iterable, Optional

from structbert_lite.cpu import CPUINFO, read_cpuinfo

# Flags that decide which GEMM kernels run (FP32 FMA width, int8 dot-product instructions, bf16/AMX).
RELEVANT_FLAGS = (
    "sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx_vnni",
    "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16",
)
PACKAGES = (
    "structbert-lite", "torch", "transformers", "onnx", "onnxruntime", "optimum", "optimum-onnx", "optimum-intel",
    "openvino", "nncf", "tokenizers", "numpy", "datasets",
)


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask), else the logical CPU count."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def load_average() -> Optional[list[float]]:
    """The 1-, 5- and 15-minute load averages, or None where the OS has none."""
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except (AttributeError, OSError):
        return None


def machine_info(threads: Optional[int] = None, cpuinfo: Path = CPUINFO) -> dict:
    """``{cpu, cpu_flags, logical_cpus, usable_cpus, threads, platform, load_average}``.

    ``cpu_flags`` lists only the flags in `RELEVANT_FLAGS` (the ones that change which kernels run).
    """
    info = read_cpuinfo(cpuinfo)
    flags = info.flags if info else frozenset()
    return {
        "cpu": (info.model if info else None) or platform.processor() or platform.machine(),
        "cpu_flags": [f for f in RELEVANT_FLAGS if f in flags],
        "logical_cpus": os.cpu_count(),
        "usable_cpus": usable_cpus(),
        "threads": threads,
        "platform": platform.platform(),
        "load_average": load_average(),
    }


def library_versions(packages: Iterable[str] = PACKAGES) -> dict[str, Optional[str]]:
    """``{"python": ..., package: version or None}`` from package metadata (nothing is imported)."""
    versions: dict[str, Optional[str]] = {"python": platform.python_version()}
    for name in packages:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def peak_rss_mb() -> float:
    """Peak resident memory of THIS program, MiB.

    ``VmHWM``, not ``ru_maxrss``: exec keeps the high-water mark of the address space it replaces, so a
    process spawned by the pipeline (which holds the model) would report the parent's peak (seen: 579 MB for
    every contender). VmHWM belongs to the new address space only.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:  # not Linux
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024  # macOS: bytes, else KiB


@dataclasses.dataclass(frozen=True)
class SchedSample:
    """Counters at one instant; `ContentionMeter` turns two of them into shares."""

    threads: dict  # thread id -> (CPU ns, run-queue wait ns) from /proc/self/task/<tid>/schedstat
    steal: int  # machine-wide steal jiffies (a hypervisor ran someone else on our vCPU)
    total: int  # machine-wide jiffies of all kinds


def _read_proc_stat() -> tuple[int, int]:
    try:
        with open("/proc/stat", encoding="ascii") as fh:
            fields = [int(x) for x in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return 0, 0
    steal = fields[7] if len(fields) > 7 else 0
    return steal, sum(fields[:8])


def sched_sample() -> SchedSample:
    """Per-thread ``/proc/self/task/*/schedstat`` (CPU ns, run-queue wait ns) and ``/proc/stat``'s steal."""
    threads = {}
    try:
        tasks = os.listdir("/proc/self/task")
    except OSError:  # not Linux
        tasks = []
    for task in tasks:
        try:
            with open(f"/proc/self/task/{task}/schedstat", encoding="ascii") as fh:
                ran, waited = (int(x) for x in fh.read().split()[:2])
        except (OSError, ValueError):
            continue  # the thread ended meanwhile, or the kernel keeps no schedstat
        threads[task] = (ran, waited)
    steal, total = _read_proc_stat()
    return SchedSample(threads, steal, total)


class ContentionMeter:
    """Run-queue wait and steal over the timed blocks only (``with meter: ...``, as often as needed).

    ``run_queue_wait_share`` = wait / (wait + CPU) of this process's threads (threads that ended meanwhile are
    left out, threads started meanwhile count from zero): near 0 on an idle machine, about one half when as
    many other busy processes as cores compete (each of our threads then runs half the time).
    """

    def __init__(self):
        self.ran = self.waited = self.steal = self.jiffies = 0
        self._before: Optional[SchedSample] = None

    def __enter__(self) -> "ContentionMeter":
        self._before = sched_sample()
        return self

    def __exit__(self, *exc) -> None:
        before, after = self._before, sched_sample()
        for tid, (cpu_ns, wait_ns) in after.threads.items():
            cpu0, wait0 = before.threads.get(tid, (0, 0))
            self.ran, self.waited = self.ran + cpu_ns - cpu0, self.waited + wait_ns - wait0
        self.steal += after.steal - before.steal
        self.jiffies += after.total - before.total

    def result(self) -> dict:
        """``{"run_queue_wait_share", "steal_share"}`` (None where not measurable)."""
        busy = self.ran + self.waited
        return {
            "run_queue_wait_share": round(self.waited / busy, 4) if busy > 0 else None,
            "steal_share": round(self.steal / self.jiffies, 4) if self.jiffies > 0 else None,
        }
