"""The run's PNG: throughput and latency against load, latency against board size, freshness."""

from pathlib import Path
from typing import Any

import matplotlib

from bench.report import FRESHNESS_P99_MAX_MS

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # after choosing the non-interactive backend


def _by_concurrency(runs: dict[str, Any], pick: str) -> tuple[list[int], list[float]]:
    points = sorted((int(c), r[pick]) for c, r in runs.items())
    return [p[0] for p in points], [p[1] for p in points]


def plot(path: Path, raw: dict[str, Any], title: str) -> None:
    fig, axes = plt.subplots(3, 2, figsize=(13, 14))
    base = raw["baselines"]
    strategies = raw["strategies"]

    ax = axes[0][0]
    for strategy, data in strategies.items():
        uniform = {k.split("/c")[1]: v for k, v in data["e2e"].items() if k.startswith("uniform/")}
        xs, ys = _by_concurrency(uniform, "events_per_s")
        ax.plot(xs, ys, "o-", label=f"end to end batched, {strategy}, hot board (events/s)")
    many = raw["many_boards"]["e2e"]
    ax.plot(
        [many["http"]["concurrency"]],
        [many["events_per_s"]],
        "D",
        label=f"end to end batched, merge_tree, {many['boards']} boards (events/s)",
    )
    xs, ys = _by_concurrency(raw["single_event"], "ok_per_s")
    ax.plot(xs, ys, "s-", label="single-event POST, wrk (req/s)")
    xs, ys = _by_concurrency(base["noop_post"], "ok_per_s")
    ax.plot(xs, ys, "^--", label="bare DRF POST (req/s)")
    for name, label, marker in (
        ("granian", "HTTP floor, bare app under granian, wrk (req/s)", "*"),
        ("gunicorn", "HTTP floor, bare app under gunicorn, wrk (req/s)", "P"),
        ("drf", "bare DRF POST under bin/web, wrk (req/s)", "X"),
    ):
        floor = raw["http_floor"][name]
        ax.plot([floor["concurrency"]], [floor["ok_per_s"]], marker, markersize=9, label=label)
    for name, label, style in (
        ("raw_upsert", "raw batched upsert", ":"),
        ("raw_exactly_once", "exactly-once apply (service SQL)", (0, (1, 3))),
        ("redis_zincrby", "pipelined ZINCRBY", "-."),
        ("naive_celery", "one task per event", "--"),
    ):
        ax.axhline(base[name]["events_per_s"], linestyle=style, color="grey", linewidth=1)
        ax.annotate(
            f"{label} (events/s)",
            (0.01, base[name]["events_per_s"]),
            xycoords=("axes fraction", "data"),
            fontsize=7,
            va="bottom",
            color="dimgrey",
        )
    ax.set_yscale("log")
    ax.set_xlabel("concurrent connections")
    ax.set_ylabel("per second (log)")
    ax.set_title("Throughput against load")
    ax.legend(fontsize=7, loc="center right")

    ax = axes[0][1]
    sizes = sorted(int(n) for n in raw["user_rank_c1"])
    for pct, style in (("p50", "o-"), ("p99", "s--")):
        ax.plot(
            sizes,
            [raw["user_rank_c1"][str(n)]["latency_ms"][pct] for n in sizes],
            style,
            label=f"user-rank read {pct}, c=1",
        )
    ref = raw["user_rank"][str(sizes[0])]["concurrency"]
    ax.plot(
        sizes,
        [raw["user_rank"][str(n)]["latency_ms"]["p99"] for n in sizes],
        "d:",
        label=f"user-rank read p99, c={ref}",
    )
    ax.axhline(10, color="red", linewidth=0.8, linestyle=":")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("users on the board (log)")
    ax.set_ylabel("latency ms (log)")
    ax.set_title("User-rank read latency against board size (target p99 <= 10 ms at 1M)")
    ax.legend(fontsize=7)

    ax = axes[1][0]
    for name, runs, c1 in (
        ("top-N read", strategies["merge_tree"]["top_read"], strategies["merge_tree"]["top_read_c1"]),
        ("bare DRF GET", base["noop_get"], base["noop_get_c1"]),
    ):
        merged = {"1": c1, **runs}
        for pct, style in (("p50", "o-"), ("p99", "s--")):
            xs = sorted(int(c) for c in merged)
            ax.plot(xs, [merged[str(c)]["latency_ms"][pct] for c in xs], style, label=f"{name} {pct}")
    ax.axhline(5, color="red", linewidth=0.8, linestyle=":")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("concurrent connections")
    ax.set_ylabel("latency ms (log)")
    ax.set_title("Read latency against load (target top-N p99 <= 5 ms)")
    ax.legend(fontsize=7)

    ax = axes[1][1]
    runs = [(f"{strategy}, hot board", data["freshness"]) for strategy, data in strategies.items()]
    runs.append((f"merge_tree, {raw['many_boards']['e2e']['boards']} boards", raw["many_boards"]["freshness"]))
    for name, fresh in runs:
        samples = sorted(fresh["samples_ms"])
        if samples:
            ys = [(i + 1) / len(samples) for i in range(len(samples))]
            ax.step(samples, ys, where="post", label=f"{name} at {fresh['target_events_per_s']:.0f} events/s")
    ax.axvline(FRESHNESS_P99_MAX_MS, color="red", linewidth=0.8, linestyle=":")
    ax.set_xscale("log")
    ax.set_xlabel("ms from 202 to visible in GET /top (log)")
    ax.set_ylabel("fraction of probes")
    ax.set_title(f"Freshness at half the max sustained rate (target p99 <= {FRESHNESS_P99_MAX_MS} ms)")
    ax.legend(fontsize=7)

    _overload(axes[2][0], axes[2][1], raw["overload"])

    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _overload(backlog_ax: Any, fresh_ax: Any, run: dict[str, Any]) -> None:
    """The overload run: the backlog admission control sees against its bound, and each probe's freshness."""
    for ax in (backlog_ax, fresh_ax):
        for name, (start, end) in run["phase_windows"].items():
            ax.axvspan(start, end, alpha=0.05 * run["phases"][name]["multiple"], color="tab:red")
            ax.annotate(f"{name} offered", (start, 1.0), xycoords=("data", "axes fraction"), fontsize=7, va="top")
        ax.set_xlabel("seconds from the start of the overload run")
    samples = run["backlog"]
    ts = [s["t"] for s in samples]
    backlog_ax.plot(ts, [s["events"] for s in samples], "-", label="events published - applied (Redis counters)")
    backlog_ax.plot(
        ts, [s["ingest_messages"] * run["batch_size"] for s in samples], ":", label="ingest messages ready x batch size"
    )
    backlog_ax.axhline(run["bound_events"], color="red", linewidth=1, label="admission bound")
    backlog_ax.axhline(run["bound_events"] / 2, color="orange", linewidth=0.8, linestyle="--", label="fair share from")
    backlog_ax.set_ylabel("events waiting")
    backlog_ax.set_title(f"Backlog under overload (of {run['max_sustained_events_per_s']:.0f} events/s max sustained)")
    backlog_ax.legend(fontsize=7, loc="upper right")

    seen = [p for p in run["probes"] if p["freshness_ms"] is not None]
    fresh_ax.plot([p["accepted_s"] for p in seen], [p["freshness_ms"] for p in seen], "o", markersize=3)
    fresh_ax.axhline(FRESHNESS_P99_MAX_MS, color="red", linewidth=0.8, linestyle=":", label="250 ms (recovered)")
    fresh_ax.axhline(5000, color="darkred", linewidth=0.8, linestyle="--", label="5 s (target at 3x)")
    fresh_ax.set_yscale("log")
    fresh_ax.set_ylabel("ms from the probe's 202 to visible in GET /top (log)")
    fresh_ax.set_title("Freshness through the overload and after (a probe each 0.5 s)")
    fresh_ax.legend(fontsize=7)
