"""Start-up milestones in seconds since the process started: where time-to-first-frame went.

``mark("engine_ready")`` records the first time the process reaches a milestone; the
server reports them all in its ``stats`` reply and logs each as it happens, and
``worldfm demo`` and bench/bench_first_frame.py print them. The clock starts when the
kernel started the process (``/proc/self/stat``), so interpreter start-up and imports
count too; where /proc is missing it starts when this module is imported.
"""

from __future__ import annotations

import logging
import os
import threading
import time

log = logging.getLogger(__name__)


def _process_age_s() -> float | None:
    """Seconds since the kernel started this process (Linux), or None where unknown."""
    try:
        with open("/proc/self/stat", "rb") as f:
            stat = f.read()
        # Field 22, start time in clock ticks since boot; fields after the ')' that ends the
        # command name (which may itself hold spaces) start at field 3.
        start_ticks = int(stat[stat.rindex(b")") + 2 :].split()[19])
        return time.clock_gettime(time.CLOCK_BOOTTIME) - start_ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


_START = time.monotonic() - (_process_age_s() or 0.0)  # monotonic time of the process start
_marks: dict[str, float] = {}
_lock = threading.Lock()


def elapsed_s() -> float:
    """Seconds since the process started."""
    return time.monotonic() - _START


def mark(name: str) -> float:
    """Record milestone ``name`` the first time it is reached (logged); returns its time in seconds."""
    with _lock:
        if name in _marks:
            return _marks[name]
        at = _marks[name] = round(elapsed_s(), 3)
    log.info("start-up: %s after %.2f s", name.replace("_", " "), at)
    return at


def marks() -> dict[str, float]:
    """Every milestone reached so far, in the order reached: name -> seconds since process start."""
    with _lock:
        return dict(_marks)
