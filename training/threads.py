"""Torch's thread count on a CPU that other processes may share (`training.num_threads=-1`, auto).

OpenMP threads spin at barriers: a 2-thread run on 2 cores beside another busy process trained
tens of times slower here than the same run with 1 thread (docs/bench/demo.md), while on a quiet
machine 2 threads are the fastest. Auto therefore follows the machine:

- at start, `idle_cpus()` over 0.2 s of `/proc/stat` gives the thread count (`auto_threads`);
- during training, `ThreadGovernor.tick()` (called every step, acting every `every` seconds)
  takes the CPU time other processes used since its last look (all busy CPU time of
  `/proc/stat` minus this process's own, `time.process_time`) and sets the count to the CPUs
  left, rounded, between 1 and this process's CPUs.

Where there is no `/proc/stat` (not Linux) auto uses every CPU and never changes it. A changed
thread count changes the order of floating-point sums, so a run under auto is not bit-for-bit
reproducible across machines' loads: fix `training.num_threads` for that.
"""
from __future__ import annotations

import os
import re
import time
from typing import Optional

import torch


def cpu_count() -> int:
    """The CPUs this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def _cpu_times() -> Optional[tuple]:
    """(idle, total, CPU count) of /proc/stat: idle + iowait and user..steal jiffies summed over all
    CPUs; None where there is no /proc/stat."""
    try:
        with open("/proc/stat") as f:
            lines = f.read().splitlines()
        fields = [int(v) for v in lines[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return None
    ncpu = sum(1 for line in lines if re.match(r"cpu\d+ ", line))
    return fields[3] + fields[4], sum(fields[:8]), ncpu


def idle_cpus(window: float = 0.2) -> Optional[float]:
    """How many CPUs were idle over the next `window` seconds (all CPUs of /proc/stat), or None
    where /proc/stat does not exist."""
    a = _cpu_times()
    if a is None:
        return None
    time.sleep(window)
    b = _cpu_times()
    total = b[1] - a[1]
    return b[2] * (b[0] - a[0]) / total if total > 0 else float(b[2])


def auto_threads(cpus: int, free: Optional[float]) -> int:
    """`free` CPUs rounded, between 1 and this process's `cpus` (all of them if `free` is None)."""
    if free is None:
        return cpus
    return int(min(cpus, max(1, round(free))))


class ThreadGovernor:
    """Keeps torch's thread count at the CPUs other processes leave free (see the module doc).

    `tick()` returns a note when it changed the count, else None."""

    def __init__(self, cpus: Optional[int] = None, every: float = 5.0):
        self.cpus, self.every = cpus or cpu_count(), every
        self._last = self._look()

    @staticmethod
    def _look():
        return time.monotonic(), time.process_time(), _cpu_times()

    def others(self, last, now) -> Optional[float]:
        """CPUs that other processes kept busy between two looks (None without /proc/stat)."""
        (w0, p0, c0), (w1, p1, c1) = last, now
        if c0 is None or c1 is None or c1[1] <= c0[1] or w1 <= w0:
            return None
        busy = c1[2] * (1.0 - (c1[0] - c0[0]) / (c1[1] - c0[1]))
        return max(0.0, busy - (p1 - p0) / (w1 - w0))

    def tick(self) -> Optional[str]:
        if time.monotonic() - self._last[0] < self.every:
            return None
        last, now = self._last, self._look()
        self._last = now
        others = self.others(last, now)
        if others is None:
            return None
        threads, before = auto_threads(self.cpus, now[2][2] - others), torch.get_num_threads()
        if threads == before:
            return None
        torch.set_num_threads(threads)
        return (f"note: other processes used {others:.1f} CPUs over the last {now[0] - last[0]:.0f} s: "
                f"{before} -> {threads} torch thread(s) (training.num_threads=-1, auto)")
