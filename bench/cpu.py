"""CPU each tier of the stack spends, read from /proc/<pid>/stat: snapshots to subtract.

A tier is a set of process trees: the web server's (the bin/web process and its workers),
the Celery workers' (each main process and its pool), and the services found by name
(RabbitMQ's ``beam.smp``, every ``postgres``, ``redis-server``) with their children.
A process counts utime + stime and also cutime + cstime, its reaped children's: a child
that exits between two snapshots (a PostgreSQL backend, a replaced pool process) then
still counts, in its parent's figure, and every live child counts once, in its own.
"""

import os
from dataclasses import dataclass
from pathlib import Path

TICK_MS = 1000.0 / os.sysconf("SC_CLK_TCK")
# Services of the machine, by the kernel's process name (the first 15 bytes of it).
SERVICE_NAMES = {"broker": ("beam.smp",), "postgres": ("postgres",), "redis": ("redis-server",)}


@dataclass(frozen=True)
class ProcStat:
    pid: int
    ppid: int
    name: str
    ticks: int  # utime + stime + cutime + cstime


def proc_table() -> dict[int, ProcStat]:
    """Every process of the machine now; one that exits while it is read is left out."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "stat").read_text()
        except OSError:
            continue
        # The name sits in parentheses and may hold spaces or parentheses itself.
        name = raw[raw.index("(") + 1 : raw.rindex(")")]
        fields = raw[raw.rindex(")") + 2 :].split()
        # fields[0] is field 3 of proc(5): ppid is 4, utime..cstime are 14..17.
        ticks = sum(int(v) for v in fields[11:15])
        table[int(entry.name)] = ProcStat(int(entry.name), int(fields[1]), name, ticks)
    return table


def trees(table: dict[int, ProcStat], roots: set[int]) -> set[int]:
    """The roots and all their descendants in ``table``."""
    children: dict[int, list[int]] = {}
    for proc in table.values():
        children.setdefault(proc.ppid, []).append(proc.pid)
    found, todo = set(), [pid for pid in roots if pid in table]
    while todo:
        pid = todo.pop()
        if pid not in found:
            found.add(pid)
            todo.extend(children.get(pid, ()))
    return found


def snapshot(stack_roots: dict[str, set[int]]) -> dict[str, float]:
    """CPU ms so far per tier: ``stack_roots`` names the stack's own trees (web, workers),
    the services are found by name."""
    table = proc_table()
    roots = dict(stack_roots)
    for tier, names in SERVICE_NAMES.items():
        roots[tier] = {proc.pid for proc in table.values() if proc.name in names}
    out = {}
    for tier, pids in roots.items():
        out[tier] = sum(table[pid].ticks for pid in trees(table, pids)) * TICK_MS
    return out


def delta(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {tier: after[tier] - before.get(tier, 0.0) for tier in after}
