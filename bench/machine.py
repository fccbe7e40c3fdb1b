"""The machine's speed beside every timing figure, so figures from different machines (or
from one machine at a busy and a quiet hour) can be compared.

``matmul_rate()`` times fp32 matrix products in PyTorch with its current thread count -- the
kind of arithmetic the frame model's CPU time goes to -- and ``machine_line()`` formats it
with the sustained rate, the CPU quota and the load average. Every bench script prints that
line beside its frame-rate figures.

The best single product says what the cores can do; the sustained rate (the mean over a
fraction of a second) says what a process gets. They part under a CPU quota (a container's
``--cpus``, or ``bench/with_cpu_quota.sh``, which lets the project's 2-core VM stand in for a
slower 2-core machine): a quota stops the cores between bursts, so the best product still runs
at full speed and only the mean shows the cut.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import torch

from models.published import matmul_gflops
from python_bridge.engine import usable_cpus

N = 512  # big enough to run at the BLAS's full rate, small enough to time in ~0.2 s


def matmul_rate(seconds: float = 0.2) -> float:
    """fp32 matmul GFLOP/s of ``N x N`` products, the best of repeated timings over ``seconds``
    (the best, not the mean: a product that another process interrupted says nothing about this
    machine's speed; the load average says how busy it is)."""
    a, b = torch.randn(N, N), torch.randn(N, N)
    a @ b  # warm-up: thread pool and caches
    best, end = float("inf"), time.perf_counter() + seconds
    while time.perf_counter() < end:
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return 2 * N**3 / best / 1e9


def cpu_quota() -> float | None:
    """CPUs' worth of time per second this process's cgroup may use (cgroup v2 ``cpu.max`` or
    v1 ``cpu.cfs_quota_us / cpu.cfs_period_us``), or None where there is no quota or no cgroup."""
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _, controllers, path = line.split(":", 2)
            if controllers == "":  # v2: one unified hierarchy
                fields = (Path("/sys/fs/cgroup") / path.lstrip("/") / "cpu.max").read_text().split()
                return None if fields[0] == "max" else int(fields[0]) / int(fields[1])
            if "cpu" in controllers.split(","):  # v1: the cpu controller's own hierarchy
                folder = Path("/sys/fs/cgroup") / controllers / path.lstrip("/")
                quota = int((folder / "cpu.cfs_quota_us").read_text())
                return None if quota < 0 else quota / int((folder / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError, IndexError):
        pass
    return None


def machine_line() -> str:
    """One line: fp32 matmul rate (best product and sustained), torch threads, the CPUs this
    process may use (of the host's), its CPU quota if any and the 1-minute load average."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    quota = cpu_quota()
    quota_text = "" if quota is None else f", quota {quota:.2f} CPUs"
    return (f"machine: fp32 matmul {matmul_rate():.0f} GFLOP/s best, {matmul_gflops():.0f} sustained (torch, "
            f"{torch.get_num_threads()} threads); {usable_cpus()} of {os.cpu_count()} CPUs{quota_text}, "
            f"load average {load:.1f}")
