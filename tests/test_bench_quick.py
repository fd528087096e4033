"""The benchmark's quick mode still runs end to end and writes its table, JSON and plot (no speed assertions)."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.messages_probe import PROBE_PREFIX
from bench.report import FRONT_DOOR_COUNTER_FIGURES, FRONT_DOOR_FIGURES, REQUIRED_FIGURES

TARGETED_FIGURES = (
    "e2e_merge_tree_uniform",
    "e2e_hot_board",
    "e2e_many_boards",
    "single_event",
    "freshness_merge_tree_p99",
    "freshness_many_boards_p99",
    "top_read_p99",
    "top_read_rps",
    "ingest_cost_ratio",
    "root_runs_per_board_per_s",
    # Issue 12's overload targets.
    "overload_3x_accepted",
    "overload_3x_failures",
    "overload_3x_backlog_max",
    "overload_3x_freshness_p99",
    "overload_recovery_s",
    "overload_exactly_once",
    # Issue 16's front-door targets.
    "single_event_c256_p99",
    "single_event_core_ms_stack",
    "sustained_freshness_p99",
)

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.pipeline
def test_bench_quick_writes_every_figure(tmp_path: Path) -> None:
    # The benchmark sets up its own environment; the suite's settings must not leak into it.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("LEADERBOARD_", "DJANGO_"))}
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, f"stdout:\n{result.stdout[-4000:]}\nstderr:\n{result.stderr[-4000:]}"
    assert "figure" in result.stdout

    document = json.loads((tmp_path / "latest.json").read_text())
    figures = document["figures"]
    for key in REQUIRED_FIGURES:
        assert key in figures, f"missing figure {key}"
        value = figures[key]["value"]
        assert isinstance(value, int | float) and math.isfinite(value) and value > 0, (key, value)
    for key, figure in figures.items():
        value = figure["value"]
        # Figures read from worker logs may be absent (null) or zero (no tree needed a
        # chord level); any value there is must be a finite number.
        assert value is None or (isinstance(value, int | float) and math.isfinite(value) and value >= 0), (key, value)
    for key in ("e2e_merge_tree_uniform", "e2e_merge_tree_zipf", "e2e_hot_board", "e2e_many_boards"):
        ratio = figures[key]["ratio_exactly_once"]
        assert isinstance(ratio, float) and math.isfinite(ratio) and ratio > 0, (key, ratio)
    # Each of issue 7's targets is stated and judged, met or not.
    for key in (*TARGETED_FIGURES, "messages_per_request_p64_concurrent"):
        assert figures[key]["target"] != "reported" and isinstance(figures[key]["met"], bool), (key, figures[key])
    roots = document["raw"]["strategies"]["merge_tree"]["rank_tasks"]["roots"]
    assert sum(roots["levels"].values()) == roots["runs"]
    assert document["machine"]["cores"] >= 1
    assert document["raw"]["baselines"]["raw_upsert"]["events_per_s"] > 0

    _assert_overload_exactly_once(document["raw"]["overload"], figures["overload_exactly_once"])
    _assert_front_door(document, figures)

    png = (tmp_path / "latest.png").read_bytes()
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 10_000
    _assert_probe_queues_gone(document["raw"]["messages_per_request"])


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


def _assert_front_door(document: dict, figures: dict) -> None:
    """Issue 16's figures are there and are numbers (the web tier's counters may be absent: null)."""
    for key in FRONT_DOOR_FIGURES:
        assert key in figures and _is_number(figures[key]["value"]), (key, figures.get(key))
    for key in FRONT_DOOR_COUNTER_FIGURES:
        assert key in figures, f"missing figure {key}"
        assert figures[key]["value"] is None or _is_number(figures[key]["value"]), (key, figures[key])
    for key in ("single_event", "http_floor_gunicorn", "http_floor_drf", "single_event_ratio_drf"):
        assert _is_number(figures[key]["ratio"]) and figures[key]["ratio"] > 0, (key, figures[key])
    raw = document["raw"]
    for name in ("granian", "gunicorn", "drf"):
        floor = raw["http_floor"][name]
        assert floor["client"] == "wrk" and floor["ok"] > 0, (name, floor)
    for concurrency in ("64", "256"):
        run = raw["single_event"][concurrency]
        assert run["client"] == "wrk" and run["concurrency"] == int(concurrency) and run["ok"] > 0, run
        # Every answer is counted: 202s and the rest.
        assert sum(run["statuses"].values()) == run["requests"], run
    costs = raw["single_event"]["64"]["cpu"]["core_ms_per_202"]
    assert set(costs) == {"web", "workers", "broker", "postgres", "redis", "stack", "client"}, costs
    assert all(_is_number(value) for value in costs.values()), costs
    sustained = raw["sustained"]
    assert sustained["target_rate"] > 0 and sustained["backlog"], sustained
    assert all(_is_number(sample["t"]) for sample in sustained["backlog"])
    assert raw["phase_seconds"] and all(_is_number(s) for s in raw["phase_seconds"].values()), raw["phase_seconds"]
    assert _is_number(document["wall_seconds"])


def _assert_probe_queues_gone(probes: dict) -> None:
    """The messages-per-request probe deletes the queues it declared."""
    from amqp.exceptions import NotFound

    from leaderboard_project.celery import app
    from tasks.queues import ingest_queue_name

    assert set(probes) == {"4", "64"}
    with app.connection_for_write() as conn:
        for partitions in probes:
            for mode in ("seq", "t16"):
                name = ingest_queue_name(f"{PROBE_PREFIX}-p{partitions}-{mode}", 0)
                with pytest.raises(NotFound):
                    conn.channel().queue_declare(queue=name, passive=True)


def _assert_overload_exactly_once(overload: dict, figure: dict) -> None:
    """Under overload every accepted event (the ledger's) is applied once, and nothing refused is applied."""
    ledger = [json.loads(line) for line in Path(overload["ledger"]).read_text().splitlines()]
    totals = overload["exactly_once"]
    probes = sum(probe["accepted_s"] is not None for probe in overload["probes"])
    assert len(ledger) == totals["accepted_requests"] > 0
    assert sum(entry["events"] for entry in ledger) + probes == totals["accepted_events"]
    assert totals["drained"] and totals["unknown_points"] == 0, totals
    assert totals["applied_points"] == totals["accepted_points"], totals
    assert totals["applied_events"] == totals["accepted_events"], totals
    assert figure["met"] is True
