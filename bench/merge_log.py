"""What the workers' INFO logs say: task runtimes, the roots of the merge levels, the ingest transactions.

The rank worker logs one ``merge root: board=<id> partials=<n> levels=<L> rounds=<r>`` line
per root run, the ingest worker one ``ingest transaction: messages=<M> events=<E>`` line per
transaction; Celery logs each task's runtime. A phase reads the slice of a log between two
byte offsets taken before and after it.
"""

import re
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from bench.stats import summary

_SUCCEEDED = re.compile(r"Task (?P<name>[\w.]+)\[[^\]]+\] succeeded in (?P<secs>[0-9.eE+-]+)s: (?P<value>.*)$")
_ROOT = re.compile(
    r"merge root: board=(?P<board>\d+) partials=(?P<partials>\d+) levels=(?P<levels>\d+) rounds=(?P<rounds>\d+)"
)
_TRANSACTION = re.compile(r"ingest transaction: messages=(?P<messages>\d+) events=(?P<events>\d+)")

# What each task is in the pipeline.
LEVEL_OF_TASK = {
    "tasks.ranking.run_root": "root (one per board per merge window)",
    "tasks.ranking.merge_span": "level 1 of a chord tree (reads F partials)",
    "tasks.ranking.merge_rows": "levels 2 and up of a chord tree",
    "tasks.ranking.finish_round": "root's publish after a chord tree",
    "tasks.ranking.repair_board": "top-N repair from the database",
    "tasks.ingest.apply_events": "ingest transaction",
}


def log_offset(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _read(path: Path, start: int, end: int | None) -> str:
    if not path.exists():
        return ""
    with path.open("rb") as handle:
        handle.seek(start)
        return handle.read(None if end is None else max(0, end - start)).decode(errors="replace")


def task_costs(path: Path, start: int = 0, end: int | None = None) -> dict[str, Any]:
    """Between two byte offsets of a worker's log: runtime summaries (ms) per task, the
    root runs (per board, and their levels), and the ingest transactions."""
    runtimes: dict[str, list[float]] = defaultdict(list)
    levels: Counter[int] = Counter()
    roots_by_board: Counter[int] = Counter()
    partials = 0
    messages: Counter[int] = Counter()
    transactions = events = 0
    for line in _read(path, start, end).splitlines():
        if (root := _ROOT.search(line)) is not None:
            roots_by_board[int(root["board"])] += 1
            levels[int(root["levels"])] += 1
            partials += int(root["partials"])
        elif (txn := _TRANSACTION.search(line)) is not None:
            transactions += 1
            messages[int(txn["messages"])] += 1
            events += int(txn["events"])
        elif (done := _SUCCEEDED.search(line)) is not None:
            runtimes[done["name"]].append(float(done["secs"]) * 1000.0)
    tasks = {
        name: {"role": LEVEL_OF_TASK.get(name, name), "ms": summary(values), "total_s": sum(values) / 1000.0}
        for name, values in sorted(runtimes.items())
    }
    return {
        "tasks": tasks,
        "roots": {
            "runs": sum(roots_by_board.values()),
            "partials": partials,
            "by_board": {str(k): v for k, v in sorted(roots_by_board.items())},
            # Root runs by the levels of their round: 0 (one partial), 1 (merged by the
            # root itself), 2+ (a chord tree).
            "levels": {str(k): v for k, v in sorted(levels.items())},
        },
        "transactions": {
            "count": transactions,
            "events": events,
            "messages": sum(k * v for k, v in messages.items()),
            "messages_histogram": {str(k): v for k, v in sorted(messages.items())},
        },
    }


def levels_mean(levels: dict[str, int]) -> float | None:
    runs = sum(levels.values())
    return sum(int(k) * v for k, v in levels.items()) / runs if runs else None


def per_transaction(transactions: dict[str, Any], what: str) -> float | None:
    """Mean messages or events per ingest transaction; None when the slice had none."""
    return transactions[what] / transactions["count"] if transactions.get("count") else None
