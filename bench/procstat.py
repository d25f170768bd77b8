"""CPU time of the router, of the generator and of the whole machine, from ``/proc``.

Read-only: nothing here may change what it measures.
"""

from __future__ import annotations

import os
import resource
from pathlib import Path

from bench.wire import BenchError

CLK_TCK = os.sysconf("SC_CLK_TCK")


def process_cpu_seconds(pid: int) -> float:
    """utime + stime of process ``pid`` (fields 14 and 15 of /proc/<pid>/stat), in seconds.

    The figures cover every thread of the process, in clock ticks (usually 10 ms).
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        raise BenchError(f"router process {pid} is gone") from None
    # Field 2 (comm) may hold spaces and parentheses: count the fields after its closing ')'.
    fields = stat[stat.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def machine_busy_seconds() -> float:
    """CPU time all CPUs spent on anything but idling (first line of /proc/stat), in seconds."""
    with open("/proc/stat") as f:
        fields = [int(v) for v in f.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def own_cpu_seconds() -> float:
    """CPU seconds (user + system) this process has used, at microsecond resolution."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime
