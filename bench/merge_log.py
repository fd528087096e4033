"""Task runtimes from a Celery worker's INFO log: the cost of each merge level and of ingest batches."""

import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from bench.stats import summary

_SUCCEEDED = re.compile(r"Task (?P<name>[\w.]+)\[[^\]]+\] succeeded in (?P<secs>[0-9.eE+-]+)s: (?P<value>.*)$")
# Each root logs how many trees it published and their levels (its runtime is on the line above).
_ROOTS = re.compile(r"merge roots: trees=(?P<trees>\d+) levels=(?P<levels>[\d,]*)")

# What each task is in the merge levels.
LEVEL_OF_TASK = {
    "tasks.ranking.reduce_leaf": "leaf (level 0)",
    "tasks.ranking.merge_partials": "inner merge level",
    "tasks.ranking.publish_top": "root (publish)",
    "tasks.ranking.snapshot_top": "sorted_set snapshot",
    "tasks.ingest.apply_events": "ingest batch",
}


def log_offset(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def task_costs(path: Path, start: int = 0, end: int | None = None) -> dict[str, Any]:
    """Runtime summaries (ms) per task name between two byte offsets, and publish_top's level counts."""
    if not path.exists():
        return {"tasks": {}, "levels": {}, "batched_roots": {"batches": 0, "trees": 0}}
    with path.open("rb") as handle:
        handle.seek(start)
        text = handle.read(None if end is None else max(0, end - start)).decode(errors="replace")
    runtimes: dict[str, list[float]] = defaultdict(list)
    levels: Counter = Counter()
    root_batches = root_trees = 0
    for line in text.splitlines():
        roots = _ROOTS.search(line)
        if roots is not None:
            root_batches += 1
            root_trees += int(roots["trees"])
            levels.update(int(n) for n in roots["levels"].split(",") if n)
            continue
        match = _SUCCEEDED.search(line)
        if match is None:
            continue
        name = match["name"]
        # Levels come from the roots' own "merge roots" lines only (not their return values too).
        runtimes[name].append(float(match["secs"]) * 1000.0)
    tasks = {
        name: {"role": LEVEL_OF_TASK.get(name, name), "ms": summary(values), "total_s": sum(values) / 1000.0}
        for name, values in sorted(runtimes.items())
    }
    return {
        "tasks": tasks,
        "levels": {str(k): v for k, v in sorted(levels.items())},
        "batched_roots": {"batches": root_batches, "trees": root_trees},
    }
