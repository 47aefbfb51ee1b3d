"""The thread governor (engine/threads.py) replaying recorded /proc/stat samples (issue 24): no switch on a
quiet machine, steal time is not "other processes", a switch only under sustained load, INFO rarely."""

from __future__ import annotations

import logging
from pathlib import Path

from wyoming_qwen3tts.engine import threads

SAMPLES = Path(__file__).parent / "fixtures" / "procstat"
HZ = 100  # USER_HZ of /proc/stat and /proc/<pid>/stat on Linux
Row = tuple[float, str, int]  # monotonic seconds, /proc/stat cpu line, own utime + stime ticks


def recording(name: str) -> list[Row]:
    rows = []
    for line in (SAMPLES / f"{name}.txt").read_text().splitlines():
        t, cpu, own = line.split("|")
        rows.append((float(t), cpu, int(own)))
    return rows


def with_steal(rows: list[Row], cores: float) -> list[Row]:
    """The same samples on a VM whose hypervisor steals `cores` of time (/proc/stat's 8th field)."""
    out, t0 = [], rows[0][0]
    for t, cpu, own in rows:
        fields = cpu.split()
        fields[8] = str(int(fields[8]) + int(HZ * cores * (t - t0)))
        out.append((t, " ".join(fields), own))
    return out


def replay(rows: list[Row], monkeypatch) -> tuple[threads.ThreadGovernor, list[int], list[int]]:
    """Feeds the samples to a governor of 2 threads on 2 cores, one tick per sample; returns it, the thread
    count after each tick, and its calls of torch.set_num_threads."""
    calls: list[int] = []
    monkeypatch.setattr(threads.torch, "set_num_threads", calls.append)
    now: list[Row] = [rows[0]]
    gov = threads.ThreadGovernor(
        configured=2,
        clock=lambda: now[0][0],
        machine=lambda: threads.busy_ticks(now[0][1]) / HZ,
        own=lambda: now[0][2] / HZ,
        cores=2,
    )
    gov.enabled = True  # independent of /proc on the test machine
    counts = []
    for row in rows:
        now[0] = row
        counts.append(gov.tick())
    return gov, counts, calls


def test_parsing_excludes_idle_iowait_and_steal():
    line = "cpu  100 20 30 1000 40 5 6 700 0 0"
    assert threads.busy_ticks(line) == 100 + 20 + 30 + 5 + 6
    assert threads.busy_ticks("cpu  1 2 3 4") == 6  # old kernels: fewer fields
    stat = "1234 (python3 -m engine (x)) R 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 3"
    assert threads.own_ticks(stat) == 300


def test_quiet_machine_never_switches(monkeypatch):
    gov, counts, calls = replay(recording("quiet"), monkeypatch)
    assert set(counts) == {2} and calls == [] and gov.switches == 0


def test_steal_time_is_not_other_processes(monkeypatch):
    rows = with_steal(recording("quiet"), 0.9)
    gov, counts, calls = replay(rows, monkeypatch)
    assert set(counts) == {2} and calls == []

    # What the governor did before issue 24 (steal counted as busy): 0.9 cores "of other processes".
    def old_busy(row: Row) -> int:  # user..steal minus idle and iowait
        values = [int(v) for v in row[1].split()[1:9]]
        return sum(values) - values[3] - values[4]

    t0, t1 = rows[0], rows[-1]
    old_others = ((old_busy(t1) - old_busy(t0)) - (t1[2] - t0[2])) / HZ / (t1[0] - t0[0])
    assert old_others > threads.ENTER_MARGIN


def test_sustained_load_switches_once_and_only_after_it_lasted(monkeypatch):
    rows = recording("busy3")
    gov, counts, calls = replay(rows, monkeypatch)
    assert calls == [1] and gov.switches == 1 and counts[-1] == 1
    first_one = counts.index(1)
    assert rows[first_one][0] - rows[0][0] >= threads.SUSTAIN_S


def test_short_bursts_of_other_work_do_not_switch(monkeypatch):
    """bursts.txt: two bursts of 1-1.5 s (no switch), then ~5 s of another process's tests (one switch)."""
    rows = recording("bursts")
    gov, counts, calls = replay(rows, monkeypatch)
    assert calls == [1] and gov.switches == 1
    assert counts[: len(rows) // 2] == [2] * (len(rows) // 2)


def test_switches_log_info_at_most_once_a_minute(monkeypatch, caplog):
    """Load alternating every 5 s for 10 minutes: many switches, one INFO line per minute, DEBUG otherwise."""
    calls: list[int] = []
    monkeypatch.setattr(threads.torch, "set_num_threads", calls.append)
    clock, machine, own = [0.0], [0.0], [0.0]
    gov = threads.ThreadGovernor(
        configured=2, clock=lambda: clock[0], machine=lambda: machine[0], own=lambda: own[0], cores=2
    )
    gov.enabled = True
    caplog.set_level(logging.DEBUG, logger=threads.__name__)
    for step in range(1200):  # 0.5 s each
        others = 1.5 if (step // 10) % 2 else 0.0
        clock[0] += 0.5
        own[0] += 0.5
        machine[0] += (1.0 + others) * 0.5
        gov.tick()
    infos = [r for r in caplog.records if r.levelno == logging.INFO]
    debugs = [r for r in caplog.records if r.levelno == logging.DEBUG]
    assert gov.switches >= 50
    assert 1 <= len(infos) <= 11 and len(infos) + len(debugs) == gov.switches
