"""What the run ran on: CPU, memory, versions, and the git commit (read from .git, no git needed)."""

import os
import platform
import sys
from pathlib import Path
from typing import Any

from bench.config import ROOT


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 1024 / 1024, 1)
    except OSError:
        pass
    return None


def git_commit(root: Path = ROOT) -> str | None:
    git = root / ".git"
    try:
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head
        ref = head[5:]
        loose = git / ref
        if loose.exists():
            return loose.read_text().strip()
        for line in (git / "packed-refs").read_text().splitlines():
            if line.endswith(" " + ref):
                return line.split()[0]
    except OSError:
        pass
    return None


def machine_info() -> dict[str, Any]:
    from bench.store import server_versions

    try:
        services = server_versions()
    except Exception as exc:  # noqa: BLE001 - the report goes on without versions
        services = {"error": str(exc)}
    return {
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "memory_gib": _memory_gib(),
        "kernel": platform.release(),
        "python": sys.version.split()[0],
        "services": services,
        "git_commit": git_commit(),
        # Other work on the machine during the run skews every figure; ratios less so.
        "load_average_1_5_15": [round(x, 2) for x in os.getloadavg()],
    }
