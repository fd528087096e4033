"""Figures from a run's raw measurements: each with its baseline, ratio and target; the table and the JSON."""

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

# Figures every run reports (quick or full); the test checks each is present and positive.
# The merge-level figures come from the workers' logs and depend on how the app runs its
# tasks (a batched root logs no runtime), so they are reported when there, not required.
REQUIRED_FIGURES = (
    "baseline_raw_upsert",
    "baseline_redis_zincrby",
    "baseline_noop_post",
    "baseline_noop_get",
    "baseline_naive_celery",
    "e2e_merge_tree_uniform",
    "e2e_merge_tree_zipf",
    "e2e_sorted_set_uniform",
    "e2e_sorted_set_zipf",
    "e2e_vs_naive",
    "single_event",
    "freshness_merge_tree_p50",
    "freshness_merge_tree_p99",
    "freshness_sorted_set_p50",
    "freshness_sorted_set_p99",
    "top_read_p50",
    "top_read_p99",
    "top_read_rps",
    "top_read_sorted_set_p99",
    "top_read_sorted_set_rps",
    "user_rank_small_p50",
    "user_rank_small_p99",
    "user_rank_large_p50",
    "user_rank_large_p99",
    "user_rank_large_rps",
    "ingest_cost_ratio",
    "ingest_apply_merge_tree_ms",
    "ingest_apply_sorted_set_ms",
)


@dataclass
class Figure:
    key: str
    label: str
    value: float | None
    unit: str
    baseline_label: str = ""
    baseline: float | None = None
    ratio: float | None = None
    target: str = "reported"
    met: bool | None = None
    note: str = ""

    def __post_init__(self) -> None:
        # A label without a baseline value is a note on the figure, not a baseline.
        if self.baseline is None and self.baseline_label:
            self.note, self.baseline_label = self.baseline_label, ""


def _ratio(value: float | None, baseline: float | None) -> float | None:
    if value is None or not baseline or math.isnan(value) or math.isnan(baseline):
        return None
    return value / baseline


def _at_least(fig: Figure, minimum: float) -> Figure:
    fig.ratio = _ratio(fig.value, fig.baseline)
    fig.target = f">= {minimum:g}x baseline"
    fig.met = None if fig.ratio is None else fig.ratio >= minimum
    return fig


def _at_most(fig: Figure, limit: float) -> Figure:
    fig.target = f"<= {limit:g} {fig.unit}"
    fig.met = None if fig.value is None or math.isnan(fig.value) else fig.value <= limit
    return fig


def _best_uniform(e2e: dict[str, Any]) -> tuple[float, str]:
    runs = [(r["events_per_s"], k.split("/c")[1]) for k, r in e2e.items() if k.startswith("uniform/")]
    return max(runs)


def _size_label(users: int) -> str:
    return f"{users / 1e6:g}M" if users >= 1_000_000 else f"{users / 1e3:g}k"


def build_figures(cfg: dict[str, Any], raw: dict[str, Any]) -> list[Figure]:
    base = raw["baselines"]
    ref = str(cfg["ref_concurrency"])
    upsert = base["raw_upsert"]["events_per_s"]
    noop_post = base["noop_post"][ref]["ok_per_s"]
    noop_get = base["noop_get"][ref]["ok_per_s"]
    figs = [
        Figure("baseline_raw_upsert", "BASELINE raw batched upsert (1 proc, 1000/stmt)", upsert, "events/s"),
        Figure(
            "baseline_redis_zincrby",
            "BASELINE pipelined ZINCRBY (1 proc, 1000/pipe)",
            base["redis_zincrby"]["events_per_s"],
            "events/s",
        ),
        Figure("baseline_noop_post", f"BASELINE bare DRF POST, c={ref}", noop_post, "req/s"),
        Figure("baseline_noop_get", f"BASELINE bare DRF GET, c={ref}", noop_get, "req/s"),
        Figure(
            "baseline_naive_celery",
            "BASELINE one Celery task per event",
            base["naive_celery"]["events_per_s"],
            "events/s",
        ),
    ]
    strategies = raw["strategies"]
    for strategy, data in strategies.items():
        best, conc = _best_uniform(data["e2e"])
        zipf = data["e2e"][f"zipf/c{ref}"]["events_per_s"]
        for dist, value, c in (("uniform", best, conc), ("zipf", zipf, ref)):
            # A run whose pipeline did not finish within the drain timeout counts only what was applied.
            done = "" if data["e2e"][f"{dist}/c{c}"]["complete"] else " (DRAIN TIMED OUT)"
            figs.append(
                _at_least(
                    Figure(
                        f"e2e_{strategy}_{dist}",
                        f"end to end, batched {cfg['batch_size']}, {dist}, {strategy}, c={c}{done}",
                        value,
                        "events/s",
                        "raw upsert",
                        upsert,
                    ),
                    0.5,
                )
            )
    mt_best, mt_conc = _best_uniform(strategies["merge_tree"]["e2e"])
    naive = base["naive_celery"]["events_per_s"]
    figs.append(
        Figure(
            "e2e_vs_naive",
            f"end to end merge_tree uniform c={mt_conc} vs naive",
            mt_best,
            "events/s",
            "one task/event",
            naive,
            _ratio(mt_best, naive),
        )
    )
    single = raw["single_event"][ref]["ok_per_s"]
    figs.append(
        _at_least(
            Figure("single_event", f"single-event submissions, c={ref}", single, "req/s", "bare POST", noop_post), 0.5
        )
    )
    for strategy, data in strategies.items():
        fresh = data["freshness"]
        rate = f"at {fresh['target_events_per_s']:.0f} ev/s (half max)"
        if fresh["missed"]:
            rate += f", {fresh['missed']} of {fresh['probes']} probes never seen"
        figs.append(Figure(f"freshness_{strategy}_p50", f"freshness p50, {strategy}", fresh["ms"]["p50"], "ms", rate))
        figs.append(
            _at_most(
                Figure(f"freshness_{strategy}_p99", f"freshness p99, {strategy}", fresh["ms"]["p99"], "ms", rate),
                1000,
            )
        )
    mt = strategies["merge_tree"]
    noop_c1 = base["noop_get_c1"]["latency_ms"]
    figs.append(
        Figure(
            "top_read_p50",
            "top-N read p50, c=1",
            mt["top_read_c1"]["latency_ms"]["p50"],
            "ms",
            "bare GET",
            noop_c1["p50"],
        )
    )
    figs.append(
        _at_most(
            Figure(
                "top_read_p99",
                "top-N read p99, c=1",
                mt["top_read_c1"]["latency_ms"]["p99"],
                "ms",
                "bare GET",
                noop_c1["p99"],
            ),
            5,
        )
    )
    figs.append(
        _at_least(
            Figure(
                "top_read_rps", f"top-N read, c={ref}", mt["top_read"][ref]["ok_per_s"], "req/s", "bare GET", noop_get
            ),
            0.8,
        )
    )
    ss = strategies.get("sorted_set")
    if ss is not None:
        figs.append(
            _at_most(
                Figure(
                    "top_read_sorted_set_p99",
                    "top-N read p99, c=1, sorted_set",
                    ss["top_read_c1"]["latency_ms"]["p99"],
                    "ms",
                ),
                5,
            )
        )
        figs.append(
            _at_least(
                Figure(
                    "top_read_sorted_set_rps",
                    f"top-N read, c={ref}, sorted_set",
                    ss["top_read"][ref]["ok_per_s"],
                    "req/s",
                    "bare GET",
                    noop_get,
                ),
                0.8,
            )
        )
    sizes = sorted(int(n) for n in raw["user_rank_c1"])
    names = {sizes[0]: "small", sizes[-1]: "large"}
    if len(sizes) > 2:
        names[sizes[len(sizes) // 2]] = "medium"
    for users in sizes:
        name, label = names.get(users), _size_label(users)
        if name is None:
            continue
        lat = raw["user_rank_c1"][str(users)]["latency_ms"]
        figs.append(Figure(f"user_rank_{name}_p50", f"user-rank read p50, {label} users, c=1", lat["p50"], "ms"))
        p99 = Figure(f"user_rank_{name}_p99", f"user-rank read p99, {label} users, c=1", lat["p99"], "ms")
        figs.append(_at_most(p99, 10) if users >= 1_000_000 else p99)
        rps = raw["user_rank"][str(users)]["ok_per_s"]
        figs.append(
            Figure(
                f"user_rank_{name}_rps",
                f"user-rank read, {label} users, c={ref}",
                rps,
                "req/s",
                "bare GET",
                noop_get,
                _ratio(rps, noop_get),
            )
        )
    cost = raw["ingest_cost"]
    small, large = min(int(n) for n in cost), max(int(n) for n in cost)
    small_rate, large_rate = cost[str(small)]["events_per_s"], cost[str(large)]["events_per_s"]
    ratio = _ratio(small_rate, large_rate)
    figs.append(
        Figure(
            "ingest_cost_ratio",
            f"per-event ingest cost {_size_label(large)} vs {_size_label(small)} users",
            ratio,
            "x",
            f"{large_rate:.0f} vs {small_rate:.0f} ev/s",
            None,
            ratio,
            "<= 1.5x",
            None if ratio is None else ratio <= 1.5,
        )
    )
    figs += _task_figures(strategies)
    steps = raw["seeding_steps"][str(sizes[-1])]
    figs.append(
        Figure(
            "index_rebuild_large_s",
            f"rank index rebuild from the database, {_size_label(sizes[-1])} users",
            steps["index_rebuild_s"],
            "s",
            f"{sizes[-1] / steps['index_rebuild_s']:,.0f} rows/s (what a Redis loss costs)",
        )
    )
    return figs


def _runtime(key: str, label: str, ms: dict[str, float] | None, missing: str) -> Figure:
    if not ms:
        return Figure(key, label, None, "ms", missing)
    return Figure(key, label, ms["mean"], "ms", f"p99 {ms['p99']:.2f} ms, n={ms['n']}")


def _task_figures(strategies: dict[str, Any]) -> list[Figure]:
    """Per-task runtimes from the workers' logs: the merge levels, the roots' levels, the ingest batches."""
    figs = []
    mt = strategies["merge_tree"]["rank_tasks"]
    roots = mt.get("batched_roots", {})
    root_note = "no runtime in the worker log"
    if roots.get("batches"):
        root_note += f" (batched root: {roots['trees']} trees in {roots['batches']} runs)"
    for key, name, label in (
        ("merge_leaf_ms", "tasks.ranking.reduce_leaf", "merge leaf, level 0 (reduce_leaf) mean"),
        ("merge_inner_ms", "tasks.ranking.merge_partials", "merge inner level (merge_partials) mean"),
        ("merge_root_ms", "tasks.ranking.publish_top", "merge root (publish_top) mean"),
    ):
        note = root_note if name.endswith("publish_top") else "not run (no tree had this level)"
        figs.append(_runtime(key, label, mt["tasks"].get(name, {}).get("ms"), note))
    levels = mt["levels"]
    count = sum(levels.values())
    mean_levels = sum(int(k) * v for k, v in levels.items()) / count if count else None
    dist = "levels:trees " + ", ".join(f"{k}:{v}" for k, v in levels.items())
    figs.append(Figure("merge_levels_mean", "merge levels per tree, mean", mean_levels, "levels", dist))
    for strategy, data in strategies.items():
        ms = data["ingest_tasks"]["tasks"].get("tasks.ingest.apply_events", {}).get("ms")
        label = f"ingest batch (apply_events) mean, {strategy}"
        figs.append(_runtime(f"ingest_apply_{strategy}_ms", label, ms, "no runtime in the worker log"))
        if strategy != "merge_tree":
            for name, task in data["rank_tasks"]["tasks"].items():
                short = name.rsplit(".", 1)[-1]
                figs.append(_runtime(f"{strategy}_{short}_ms", f"{strategy} rank task {short} mean", task["ms"], ""))
    return figs


def _num(value: float | None, unit: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if unit == "ms" or abs(value) < 10:
        return f"{value:.2f}"
    return f"{value:,.0f}"


def table(figs: list[Figure]) -> str:
    rows = [("figure", "value", "unit", "baseline", "ratio", "target", "result", "note")]
    for f in figs:
        baseline = "" if f.baseline is None else f"{f.baseline_label} {_num(f.baseline, f.unit)}"
        result = "-" if f.met is None else ("met" if f.met else "MISSED")
        ratio = "-" if f.ratio is None else f"{f.ratio:.2f}x"
        rows.append((f.label, _num(f.value, f.unit), f.unit, baseline.strip(), ratio, f.target, result, f.note))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        cells = [c.rjust(w) if i in (1, 4) else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def clean(value: Any) -> Any:
    """JSON without NaN: NaN and infinities become null."""
    if isinstance(value, float):
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [clean(v) for v in value]
    return value


def write_json(path: Path, document: dict[str, Any], figs: list[Figure]) -> None:
    document = {**document, "figures": {f.key: asdict(f) for f in figs}}
    path.write_text(json.dumps(clean(document), indent=2, sort_keys=False) + "\n")
