"""Fewer CPU threads while other processes keep the cores busy (a Home Assistant host running other add-ons).

One decode frame runs thousands of short OpenMP parallel regions, and each ends in a barrier that waits for
every thread of the team. When other processes compete for the cores, one of our threads is often
descheduled, and its partner waits out the rest of a time slice at almost every barrier: beside three
CPU-bound processes on 2 cores, 2 threads ran 8.7x slower than alone, 1 thread 4.4x (fair share ~2.5x). So the
engine thread watches how busy the rest of the machine is (from /proc/stat, minus this process's own CPU
time) and drops to one thread while the others use more than the cores we would leave them, with hysteresis.

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
ENTER_MARGIN = 0.75  # cores beyond what we leave free: contended
LEAVE_MARGIN = 0.25  # back below this: not contended


def machine_busy_seconds() -> float:
    """Busy CPU seconds of the whole machine (all cores) since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    idle = values[3] + values[4]
    return (sum(values) - idle) / os.sysconf("SC_CLK_TCK")


def _own_busy_s() -> float:
    fields = Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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
        if wanted != self.current:
            _LOGGER.info(
                "Other processes keep %.1f of %d cores busy: %d CPU thread%s",
                others,
                self.cores,
                wanted,
                "" if wanted == 1 else "s",
            )
            torch.set_num_threads(wanted)
            self.current = wanted
        return self.current

    def reset(self) -> None:
        """Back to the configured count (the engine thread goes idle; the next one starts fresh)."""
        if self.current != self.configured:
            torch.set_num_threads(self.configured)
            self.current = self.configured
        self._last = None
