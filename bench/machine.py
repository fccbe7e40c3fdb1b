"""The machine's speed beside every timing figure, so figures from different machines (or
from one machine at a busy and a quiet hour) can be compared.

``matmul_rate()`` times fp32 matrix products in PyTorch with its current thread count -- the
kind of arithmetic the frame model's CPU time goes to -- and ``machine_line()`` formats it
with the load average. Every bench script prints that line beside its frame-rate figures.
"""

from __future__ import annotations

import os
import time

import torch

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


def machine_line() -> str:
    """One line: fp32 matmul rate, torch threads, the CPUs this process may use (of the host's)
    and the 1-minute load average."""
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"machine: fp32 matmul {matmul_rate():.0f} GFLOP/s (torch, {torch.get_num_threads()} threads, "
            f"{N}x{N}); {usable_cpus()} of {os.cpu_count()} CPUs, load average {load:.1f}")
