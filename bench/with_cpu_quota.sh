#!/usr/bin/env bash
# Run a command under a CPU quota, so that a fast machine stands in for a slower one with the
# same number of cores (issue 16's speed target names a ~100 GFLOP/s 2-core machine):
#
#     sudo bash bench/with_cpu_quota.sh 1.4 python bench/bench_stream.py --rounds 3
#
# The quota is CPUs' worth of time per 1 ms period (the kernel's CFS bandwidth control,
# docs.kernel.org/scheduler/sched-bwc.html), so every core keeps running in short bursts,
# the way a slower core spreads the same work. The command and its children run in a fresh
# cgroup (v2: cpu.max; v1: cpu.cfs_quota_us / cpu.cfs_period_us), removed afterwards.
# Needs root and a writable cgroup hierarchy. bench/machine.py prints the quota and the
# sustained matmul rate it leaves (on this project's VM: 1.4 CPUs of 2 -> 92-99 GFLOP/s sustained of ~215).
set -euo pipefail
if [[ $# -lt 2 ]]; then
    echo "usage: $0 CPUS COMMAND [ARGS...]   (e.g. $0 1.4 python bench/bench_stream.py)" >&2
    exit 2
fi
cpus=$1
shift
period=1000  # microseconds: short, so a frame sees many periods, not one long stall
quota=$(python3 -c "import sys; q = round(float(sys.argv[1]) * $period); assert q >= 1000, 'quota below 1 ms'; print(q)" "$cpus" 2>/dev/null) \
    || { echo "CPUS must be a number of CPUs >= 1.0 (the kernel's smallest quota is 1 ms a period); got '$cpus'" >&2; exit 2; }
name="worldfm-quota-$$"
if [[ -f /sys/fs/cgroup/cgroup.controllers ]]; then  # v2: one unified hierarchy
    group=/sys/fs/cgroup/$name
    mkdir "$group"
    echo "$quota $period" > "$group/cpu.max"
else  # v1: the cpu controller has its own hierarchy
    group=/sys/fs/cgroup/cpu/$name
    mkdir "$group"
    echo "$period" > "$group/cpu.cfs_period_us"
    echo "$quota" > "$group/cpu.cfs_quota_us"
fi
trap 'rmdir "$group" 2>/dev/null || true' EXIT
# The child joins the group before it runs the command, so everything it starts is inside.
bash -c 'echo $$ > "$1/cgroup.procs" && shift && exec "$@"' _ "$group" "$@"
