"""Training gives the same bits on another CPU: the retrain.sh lineage must reproduce on any
x86-64 machine, and kernels that differ between CPUs (by vector width, vendor or library branch)
made two machines train models 0.4-0.5 dB apart out of family (MODEL_CARD.md).

The other CPU is an Intel Haswell (AVX2, no AVX-512; "GenuineIntel", so MKL takes its Intel
branches) emulated by qemu-user's TCG, which implements each instruction IEEE-exactly (QEMU 7.2
added AVX2 and FMA to TCG). Instructions whose results the hardware leaves to the vendor
(``rcpps``, ``rsqrtps``) come out of it exact, so a kernel using them fails here as it would
between an AMD and an Intel CPU.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PINS = REPO / "models" / "weights" / "demo-256" / "kernel_pins.env"
STEPS = Path(__file__).with_name("cross_cpu_steps.py")


def kernel_pins() -> dict[str, str]:
    """retrain.sh's kernel pins, read as it reads them."""
    pins = {}
    for line in PINS.read_text().splitlines():
        if line and not line.startswith("#"):
            key, value = line.split("=", 1)
            pins[key] = value
    return pins


def _steps(launcher: list[str]) -> str:
    env = {**os.environ, **kernel_pins(), "PYTHONPATH": str(REPO)}
    done = subprocess.run([*launcher, sys.executable, str(STEPS)], env=env, capture_output=True, text=True,
                          timeout=900, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.strip().splitlines()[-1]


@pytest.mark.skipif(platform.machine() != "x86_64" or shutil.which("qemu-x86_64") is None,
                    reason="needs an x86-64 host and qemu-user (.ci/run installs it)")
def test_training_steps_give_the_same_bits_on_an_emulated_intel_haswell():
    assert set(kernel_pins()) == {"ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "MKL_CBWR"}
    here = _steps([])
    haswell = _steps(["qemu-x86_64", "-cpu", "Haswell"])
    assert here.startswith("AVX2 ") and haswell.startswith("AVX2 "), (here, haswell)
    assert here == haswell
