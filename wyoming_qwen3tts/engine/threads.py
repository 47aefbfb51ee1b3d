"""Fewer CPU threads while other processes keep the cores busy (a Home Assistant host running other add-ons).

One decode frame runs thousands of short OpenMP parallel regions, and each ends in a barrier that waits for
every thread of the team. When other processes compete for the cores, one of our threads is often
descheduled, and its partner waits out the rest of a time slice at almost every barrier: beside three
CPU-bound processes on 2 cores, 2 threads ran 8.7x slower than alone, 1 thread 4.4x (fair share ~2.5x). So the
engine thread watches how busy the rest of the machine is (from /proc/stat, minus this process's own CPU
time) and drops to one thread while the others use more than the cores we would leave them, with hysteresis.

What counts as "other processes" (issue 24: on a quiet VM the governor switched 18 times in six minutes):
* busy = user + nice + system + irq + softirq. Not steal: the hypervisor giving our vCPU's time to another
  guest is in /proc/stat's busy fields, but no thread count of ours changes it. Not iowait (idle).
* minus this process's own CPU time (/proc/self/stat: all its threads, OpenMP's spinning included).
* a decision needs the load on the same side of a mark for SUSTAIN_S: a compile, a GC or a test run of a
  few seconds never switches, and one sample's tick rounding (the two counters are read a moment apart)
  never does either.
A switch is logged at INFO at most once per LOG_EVERY_S (DEBUG otherwise).

Only speed changes: the codes are the same with 1 or 2 threads; float sums in a few kernels may differ in the
last bit. Linux only (elsewhere it stays at the configured thread count).
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Callable, Optional

import torch

_LOGGER = logging.getLogger(__name__)

INTERVAL_S = 0.5
SUSTAIN_S = 3.0  # the load must stay past a mark this long before the thread count changes
ENTER_MARGIN = 0.75  # cores beyond what we leave free: contended
LEAVE_MARGIN = 0.25  # back below this: not contended
LOG_EVERY_S = 60.0  # at most one INFO line per minute about switching


def busy_ticks(cpu_line: str) -> int:
    """Busy ticks of /proc/stat's aggregate `cpu` line: user, nice, system, irq, softirq.

    Fields: user nice system idle iowait irq softirq steal guest guest_nice. Idle and iowait are idle; steal
    is time the hypervisor ran someone else; guest/guest_nice are already counted in user/nice."""
    values = [int(v) for v in cpu_line.split()[1:]] + [0] * 10
    return values[0] + values[1] + values[2] + values[5] + values[6]


def machine_busy_seconds() -> float:
    """Busy CPU seconds of the whole machine (all cores) since boot, steal time excluded."""
    return busy_ticks(Path("/proc/stat").read_text().splitlines()[0]) / os.sysconf("SC_CLK_TCK")


def own_ticks(stat_line: str) -> int:
    """utime + stime of a /proc/<pid>/stat line: every thread of the process (the comm may hold spaces)."""
    fields = stat_line.rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def _own_busy_s() -> float:
    return own_ticks(Path("/proc/self/stat").read_text()) / os.sysconf("SC_CLK_TCK")


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def wanted_threads(others: float, current: int, configured: int, cores: int) -> int:
    """The thread count for `others` cores of load from other processes (the decision, without I/O)."""
    if configured <= 1:
        return configured
    free = cores - configured  # what we leave to others when we run `configured` threads
    if current == configured and others > free + ENTER_MARGIN:
        return 1
    if current != configured and others < free + LEAVE_MARGIN:
        return configured
    return current


class ThreadGovernor:
    """Called by the engine thread between steps; samples the load every INTERVAL_S."""

    def __init__(
        self,
        configured: Optional[int] = None,
        clock: Callable[[], float] = time.monotonic,
        machine: Callable[[], float] = machine_busy_seconds,
        own: Callable[[], float] = _own_busy_s,
        cores: Optional[int] = None,
    ) -> None:
        self.configured = configured or torch.get_num_threads()
        self.current = self.configured
        self.cores = cores or _cores()
        self._clock, self._machine, self._own = clock, machine, own
        self._last: Optional[tuple[float, float, float]] = None
        self._pending: Optional[tuple[int, float]] = None  # (thread count wanted, since when)
        self._logged_at = -LOG_EVERY_S
        self.switches = 0
        self.enabled = self.configured > 1 and Path("/proc/stat").exists()

    def tick(self) -> int:
        """Re-decide at most every INTERVAL_S; returns the thread count now in force."""
        if not self.enabled:
            return self.current
        now = self._clock()
        if self._last is not None and now - self._last[0] < INTERVAL_S:
            return self.current
        try:
            sample = (now, self._machine(), self._own())
        except (OSError, ValueError, IndexError):
            self.enabled = False
            return self.current
        previous, self._last = self._last, sample
        if previous is None:
            return self.current
        wall = sample[0] - previous[0]
        if wall <= 0:
            return self.current
        others = max(0.0, (sample[1] - previous[1]) - (sample[2] - previous[2])) / wall
        wanted = wanted_threads(others, self.current, self.configured, self.cores)
        if wanted == self.current:
            self._pending = None
            return self.current
        if self._pending is None or self._pending[0] != wanted:
            self._pending = (wanted, previous[0])  # the load crossed the mark during this interval
        if now - self._pending[1] < SUSTAIN_S:
            return self.current
        self._switch(wanted, others, now)
        return self.current

    def _switch(self, wanted: int, others: float, now: float) -> None:
        level = logging.DEBUG
        if now - self._logged_at >= LOG_EVERY_S:
            level, self._logged_at = logging.INFO, now
        _LOGGER.log(
            level,
            "Other processes kept %.1f of %d cores busy for %.0f s: %d CPU thread%s",
            others,
            self.cores,
            SUSTAIN_S,
            wanted,
            "" if wanted == 1 else "s",
        )
        torch.set_num_threads(wanted)
        self.current, self._pending = wanted, None
        self.switches += 1

    def reset(self) -> None:
        """Back to the configured count (the engine thread goes idle; the next one starts fresh)."""
        if self.current != self.configured:
            torch.set_num_threads(self.configured)
            self.current = self.configured
        self._last = None
        self._pending = None
