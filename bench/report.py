"""Figures from a run's raw measurements: each with its baseline, ratio and target; the table and the JSON."""

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.merge_log import levels_mean, per_transaction

# Figures every run reports (quick or full); the test checks each is present and positive.
# The figures read from the workers' logs (root rate, levels, transactions, task runtimes)
# depend on what a short run happened to need, so they are reported when there (and may
# be 0 in quick mode), not required.
REQUIRED_FIGURES = (
    "live_page_poll_rps",
    "live_page_cores_per_1000",
    "baseline_raw_upsert",
    "baseline_raw_exactly_once",
    "baseline_redis_zincrby",
    "baseline_noop_post",
    "baseline_noop_get",
    "baseline_naive_celery",
    "e2e_merge_tree_uniform",
    "e2e_merge_tree_zipf",
    "e2e_sorted_set_uniform",
    "e2e_sorted_set_zipf",
    "e2e_vs_naive",
    "e2e_hot_board",
    "e2e_many_boards",
    "messages_per_request_p4_sequential",
    "messages_per_request_p4_concurrent",
    "messages_per_request_p64_sequential",
    "messages_per_request_p64_concurrent",
    "single_event",
    "freshness_merge_tree_p50",
    "freshness_merge_tree_p99",
    "freshness_sorted_set_p50",
    "freshness_sorted_set_p99",
    "freshness_many_boards_p50",
    "freshness_many_boards_p99",
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
    "rank_range_p99",
    "friends_p99",
    "ingest_cost_ratio",
    "ingest_apply_merge_tree_ms",
    "ingest_apply_sorted_set_ms",
    # The overload run (issue 12): each is positive in any run. Not required: the 503/429
    # shares and the failure count (0 when nothing was refused) and the backlog max (0 when
    # the workers kept up: the monitor levels the counters whenever no message is ready).
    "overload_2x_offered",
    "overload_2x_accepted",
    "overload_2x_freshness_p99",
    "overload_3x_offered",
    "overload_3x_accepted",
    "overload_3x_share_202",
    "overload_3x_freshness_p99",
    "overload_recovery_s",
    "overload_exactly_once",
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
    # End-to-end figures: the ratio against the service's own exactly-once apply as well.
    ratio_exactly_once: float | None = None

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


# Issue 10: a rank range half way down the largest board and a 100-id friends lookup.
DEEP_READ_P99_MAX_MS = 10


def _deep_read_figures(raw: dict[str, Any], ref: str, noop_get: float) -> list[Figure]:
    figs = []
    reads = {
        "rank_range": f"rank range (100 ranks) at depth {raw['rank_range']['depth']:,}",
        "friends": f"friends lookup ({raw['friends']['ids']} ids)",
    }
    for key, what in reads.items():
        label = _size_label(raw[key]["users"])
        lat = raw[key]["c1"]["latency_ms"]
        figs.append(Figure(f"{key}_p50", f"{what} p50, {label} users, c=1", lat["p50"], "ms"))
        figs.append(
            _at_most(Figure(f"{key}_p99", f"{what} p99, {label} users, c=1", lat["p99"], "ms"), DEEP_READ_P99_MAX_MS)
        )
        rps = raw[key]["cref"]["ok_per_s"]
        figs.append(
            Figure(
                f"{key}_rps",
                f"{what}, {label} users, c={ref}",
                rps,
                "req/s",
                "bare GET",
                noop_get,
                _ratio(rps, noop_get),
            )
        )
    return figs


def _at_most(fig: Figure, limit: float) -> Figure:
    fig.target = f"<= {limit:g} {fig.unit}"
    fig.met = None if fig.value is None or math.isnan(fig.value) else fig.value <= limit
    return fig


# End to end batched against the baselines of apply (issue 7's targets).
E2E_MIN_EXACTLY_ONCE = 0.5
E2E_MIN_RAW_UPSERT = 0.2
FRESHNESS_P99_MAX_MS = 250
# A request costs at most one message, whatever the partition count.
MESSAGES_PER_REQUEST_MAX = 1


def _e2e(fig: Figure, exactly_once: float | None) -> Figure:
    """``ratio`` against the raw upsert (``baseline``), ``ratio_exactly_once`` against the
    service's own apply; met when both targets are."""
    fig.ratio = _ratio(fig.value, fig.baseline)
    fig.ratio_exactly_once = _ratio(fig.value, exactly_once)
    fig.target = f">= {E2E_MIN_EXACTLY_ONCE:g}x exactly-once, >= {E2E_MIN_RAW_UPSERT:g}x raw upsert"
    if fig.ratio is None or fig.ratio_exactly_once is None:
        fig.met = None
    else:
        fig.met = fig.ratio_exactly_once >= E2E_MIN_EXACTLY_ONCE and fig.ratio >= E2E_MIN_RAW_UPSERT
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
    exactly_once = base["raw_exactly_once"]["events_per_s"]
    noop_post = base["noop_post"][ref]["ok_per_s"]
    noop_get = base["noop_get"][ref]["ok_per_s"]
    figs = [
        Figure("baseline_raw_upsert", "BASELINE raw batched upsert (1 proc, 1000/stmt)", upsert, "events/s"),
        Figure(
            "baseline_raw_exactly_once",
            "BASELINE exactly-once apply, service SQL (1 proc, 1000/txn)",
            exactly_once,
            "events/s",
            "score_events_apply: event ids + upsert, ranking index",
        ),
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
            done = _timed_out(data["e2e"][f"{dist}/c{c}"])
            figs.append(
                _e2e(
                    Figure(
                        f"e2e_{strategy}_{dist}",
                        f"end to end, batched {cfg['batch_size']}, {dist}, {strategy}, c={c}{done}",
                        value,
                        "events/s",
                        "raw upsert",
                        upsert,
                    ),
                    exactly_once,
                )
            )
    mt_best, mt_conc = _best_uniform(strategies["merge_tree"]["e2e"])
    naive = base["naive_celery"]["events_per_s"]
    hot = strategies["merge_tree"]["e2e"][f"uniform/c{mt_conc}"]
    figs.append(
        Figure(
            "e2e_vs_naive",
            f"end to end merge_tree uniform c={mt_conc} vs naive",
            mt_best,
            "events/s",
            "one task/event",
            naive,
            _ratio(mt_best, naive),
            ratio_exactly_once=_ratio(mt_best, exactly_once),
        )
    )
    figs.append(
        _e2e(
            Figure(
                "e2e_hot_board",
                f"HOT BOARD end to end (all load on 1 board), merge_tree, c={mt_conc}{_timed_out(hot)}",
                mt_best,
                "events/s",
                "raw upsert",
                upsert,
            ),
            exactly_once,
        )
    )
    many = raw["many_boards"]
    many_conc = many["e2e"]["http"]["concurrency"]
    figs.append(
        _e2e(
            Figure(
                "e2e_many_boards",
                f"MANY BOARDS end to end ({many['e2e']['boards']} boards, 1 per request), c={many_conc}"
                + _timed_out(many["e2e"]),
                many["e2e"]["events_per_s"],
                "events/s",
                "raw upsert",
                upsert,
                note=f"{many['e2e']['boards_with_events']} boards got events",
            ),
            exactly_once,
        )
    )
    if "profiles_cost" in raw:
        figs.append(_profiles_cost_figure(raw["profiles_cost"]))
    figs += _front_door_figures(cfg, raw)
    freshness_runs = [(strategy, f"{strategy}, hot board", data["freshness"]) for strategy, data in strategies.items()]
    freshness_runs.append(("many_boards", f"merge_tree, {many['e2e']['boards']} boards", many["freshness"]))
    for key, name, fresh in freshness_runs:
        rate = f"at {fresh['target_events_per_s']:.0f} ev/s (half max)"
        if fresh["missed"]:
            rate += f", {fresh['missed']} of {fresh['probes']} probes never seen"
        figs.append(Figure(f"freshness_{key}_p50", f"freshness p50, {name}", fresh["ms"]["p50"], "ms", rate))
        figs.append(
            _at_most(
                Figure(f"freshness_{key}_p99", f"freshness p99, {name}", fresh["ms"]["p99"], "ms", rate),
                FRESHNESS_P99_MAX_MS,
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
    live = mt.get("live_page")
    if live is not None:
        figs.append(
            Figure(
                "live_page_poll_rps",
                f"live page poll of /top answered 304, c={ref}",
                live["poll_304"]["ok_per_s"],
                "req/s",
                "bare GET",
                noop_get,
                ratio=_ratio(live["poll_304"]["ok_per_s"], noop_get),
            )
        )
        figs.append(
            Figure(
                "live_page_cores_per_1000",
                "live page: cores for 1,000 open pages",
                live["cores_for_1000_pages"],
                "cores",
                note="a 304 poll a second and an /activity read every 2 s per page, "
                f"{live['poll_core_ms']:.2f} and {live['activity_core_ms']:.2f} core-ms each",
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
    figs += _deep_read_figures(raw, ref, noop_get)
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
    figs += _messages_figures(raw["messages_per_request"])
    figs += _overload_figures(raw["overload"])
    figs += _pipeline_figures(raw)
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


# Issue 16's targets: single events at c=64 against the granian floor (below the lower
# ratio the issue is blocked), latency at c=256, and the whole stack's CPU per request.
SINGLE_EVENT_MIN_FLOOR_RATIO = 0.3
SINGLE_EVENT_BLOCKED_RATIO = 0.15
SINGLE_EVENT_C256_P99_MAX_MS = 50
SINGLE_EVENT_STACK_CORE_MS_MAX = 0.4

# The front door's figures: each a number in any run (>= 0; a count of non-202 answers may be
# 0) ...
FRONT_DOOR_FIGURES = (
    "http_floor_granian",
    "http_floor_gunicorn",
    "http_floor_drf",
    "single_event",
    "single_event_ratio_drf",
    "single_event_p50",
    "single_event_p99",
    "single_event_not_202",
    "single_event_c256",
    "single_event_c256_p50",
    "single_event_c256_p99",
    "single_event_c256_not_202",
    "single_event_core_ms_web",
    "single_event_core_ms_workers",
    "single_event_core_ms_broker",
    "single_event_core_ms_postgres",
    "single_event_core_ms_redis",
    "single_event_core_ms_stack",
    "single_event_core_ms_client",
    "single_event_events_per_transaction",
    "sustained_rate",
    "sustained_not_202",
    "sustained_freshness_p50",
    "sustained_freshness_p99",
    "sustained_backlog_max",
)
# ... and those read from the web tier's Redis counters: null while it does not keep them.
FRONT_DOOR_COUNTER_FIGURES = ("single_event_messages_per_request", "single_event_events_per_message")


# Issue 20: profiles on every event cost at most 10 % of ingest throughput.
PROFILES_MIN_RATIO = 0.9


def _rates(values: list[float]) -> str:
    return ", ".join(f"{value:.0f}" for value in values)


def _profiles_cost_figure(cost: dict[str, Any]) -> Figure:
    """The mean of each kind's runs (taken in turns), the one with profiles against the one without."""
    plain = [run["events_per_s"] for run in cost["runs"]["plain"]]
    meta = [run["events_per_s"] for run in cost["runs"]["metadata"]]
    incomplete = any(not run["complete"] for kind in cost["runs"].values() for run in kind)
    return _at_least(
        Figure(
            "ingest_profiles_ratio",
            f"end to end with a display name and {cost['metadata_bytes']} B of metadata on every event, "
            f"merge_tree, uniform, c={cost['concurrency']}" + (" (a run timed out)" if incomplete else ""),
            sum(meta) / len(meta),
            "events/s",
            "same, no profiles",
            sum(plain) / len(plain),
            note=f"runs in turns: without {_rates(plain)}; with {_rates(meta)}",
        ),
        PROFILES_MIN_RATIO,
    )


def _statuses(run: dict[str, Any]) -> str:
    other = {k: v for k, v in run["statuses"].items() if k != str(run["ok_status"])}
    errors = {k: v for k, v in run["errors"].items() if v}
    text = f"{run['not_ok']} of {run['requests']} answers not {run['ok_status']}"
    if other:
        text += f" ({', '.join(f'{k} x{v}' for k, v in other.items())})"
    if errors:
        text += f"; wrk errors {errors}"
    return text


def _front_door_figures(cfg: dict[str, Any], raw: dict[str, Any]) -> list[Figure]:
    """Issue 16: the HTTP floors, single events at c=64 and c=256 with each tier's cost, the sustained run."""
    floors = raw["http_floor"]
    granian, gunicorn, drf = (floors[k]["ok_per_s"] for k in ("granian", "gunicorn", "drf"))
    shape = f"{cfg['web_workers']} workers x {cfg['web_threads']} threads"
    fc = cfg["floor_concurrency"]
    figs = [
        Figure(
            "http_floor_granian",
            f"HTTP FLOOR bare WSGI app under granian ({shape}), wrk c={fc}",
            granian,
            "req/s",
            note=_statuses(floors["granian"]),
        ),
        Figure(
            "http_floor_gunicorn",
            f"HTTP FLOOR bare WSGI app under gunicorn gthread ({shape}), wrk c={fc}",
            gunicorn,
            "req/s",
            "granian floor",
            granian,
            _ratio(gunicorn, granian),
            note=_statuses(floors["gunicorn"]),
        ),
        Figure(
            "http_floor_drf",
            f"HTTP FLOOR bare DRF POST under bin/web, wrk c={fc}",
            drf,
            "req/s",
            "granian floor",
            granian,
            _ratio(drf, granian),
            note=_statuses(floors["drf"]),
        ),
    ]
    concurrencies = [str(c) for c in cfg["single_event_concurrencies"]]
    first, last = raw["single_event"][concurrencies[0]], raw["single_event"][concurrencies[-1]]
    rate = first["ok_per_s"]
    single = Figure(
        "single_event",
        f"single-event submissions answered 202, wrk c={concurrencies[0]}",
        rate,
        "req/s",
        "granian floor",
        granian,
        _ratio(rate, granian),
        f">= {SINGLE_EVENT_MIN_FLOOR_RATIO:g}x granian floor (blocked < {SINGLE_EVENT_BLOCKED_RATIO:g}x)",
        note=_statuses(first),
    )
    single.met = None if single.ratio is None else single.ratio >= SINGLE_EVENT_MIN_FLOOR_RATIO
    if single.ratio is not None and single.ratio < SINGLE_EVENT_BLOCKED_RATIO:
        single.note = f"BLOCKED (under {SINGLE_EVENT_BLOCKED_RATIO:g}x the floor); {single.note}"
    figs.append(single)
    ratio_drf = _ratio(rate, drf)
    figs.append(
        Figure(
            "single_event_ratio_drf",
            f"single-event submissions / bare DRF POST, wrk c={concurrencies[0]}",
            ratio_drf,
            "x",
            "bare DRF POST",
            drf,
            ratio_drf,
        )
    )
    for c, run in ((concurrencies[0], first), (concurrencies[-1], last)):
        key = "single_event" if c == concurrencies[0] else f"single_event_c{c}"
        if key != "single_event":
            figs.append(
                Figure(
                    key,
                    f"single-event submissions answered 202, wrk c={c}",
                    run["ok_per_s"],
                    "req/s",
                    "granian floor",
                    granian,
                    _ratio(run["ok_per_s"], granian),
                    note=_statuses(run),
                )
            )
        lat = run["latency_ms"]
        figs.append(Figure(f"{key}_p50", f"single-event latency p50, wrk c={c}", lat["p50"], "ms", note="every answer"))
        p99 = Figure(f"{key}_p99", f"single-event latency p99, wrk c={c}", lat["p99"], "ms", note="every answer")
        figs.append(_at_most(p99, SINGLE_EVENT_C256_P99_MAX_MS) if c == concurrencies[-1] else p99)
        figs.append(
            Figure(
                f"{key}_not_202",
                f"single-event answers other than 202, wrk c={c}",
                run["not_ok"],
                "requests",
                note=_statuses(run),
            )
        )
    figs += _single_event_costs(first, concurrencies[0])
    figs += _sustained_figures(raw["sustained"])
    return figs


def _single_event_costs(run: dict[str, Any], c: str) -> list[Figure]:
    """CPU per 202 by tier, messages per request and events per ingest transaction, at c=64."""
    per = run["cpu"]["core_ms_per_202"]
    ms = run["cpu"]["ms"]
    served = f"{run['served_202']:,} answers 202 (wrk saw {run['ok']:,}, the rest in flight when it stopped)"
    figs = []
    tiers = {
        "web": "web (HAProxy and granian: the front door and Django), while the load ran",
        "workers": "workers (Celery ingest + rank, pools included), until idle",
        "broker": "broker (RabbitMQ beam.smp), until idle",
        "postgres": "PostgreSQL (every postgres process), until idle",
        "redis": "Redis (redis-server), until idle",
        "client": "client (wrk)",
    }
    for tier, what in tiers.items():
        figs.append(
            Figure(
                f"single_event_core_ms_{tier}",
                f"single event CPU per 202, {what}, c={c}",
                per[tier],
                "core-ms",
                note=f"{ms[tier]:,.0f} ms for {served}",
            )
        )
    figs.append(
        _at_most(
            Figure(
                "single_event_core_ms_stack",
                f"single event CPU per 202, whole stack (web+workers+broker+PostgreSQL+Redis), c={c}",
                per["stack"],
                "core-ms",
                note="client excluded; from /proc/<pid>/stat, 10 ms ticks",
            ),
            SINGLE_EVENT_STACK_CORE_MS_MAX,
        )
    )
    msgs = run["messages"]
    missing = "no lbbench:{backlog}:messages counter (the web tier does not keep it)"
    published = msgs["published_events"]
    figs.append(
        Figure(
            "single_event_messages_per_request",
            f"single event messages published per request, c={c}",
            msgs["messages_per_request"],
            "msgs",
            note=missing if msgs["messages"] is None else f"{msgs['messages']:,} messages for {served}",
        )
    )
    figs.append(
        Figure(
            "single_event_events_per_message",
            f"single event events per published message, c={c}",
            msgs["events_per_message"],
            "events",
            note=missing
            if msgs["messages"] is None or published is None
            else f"{published:,} events published (lbbench:{{backlog}}:published)",
        )
    )
    txn = run["transactions"]
    figs.append(
        Figure(
            "single_event_events_per_transaction",
            f"single event events per ingest transaction, mean, c={c}",
            txn["events_per_transaction"],
            "events",
            note=f"{txn['count']} transactions, {txn['messages']} messages, {txn['events']} events",
        )
    )
    return figs


def _sustained_figures(run: dict[str, Any]) -> list[Figure]:
    fresh = run["freshness"]
    seconds = f"{run['seconds']:.0f} s"
    held = Figure(
        "sustained_rate",
        f"SUSTAINED single events answered 202, {run['fraction']:.0%} of the c=64 max, paced, {seconds}",
        run["ok_per_s"],
        "req/s",
        "offered",
        run["target_rate"],
        _ratio(run["ok_per_s"], run["target_rate"]),
        note=f"wrk c={run['concurrency']}, latency p99 {run['latency_ms']['p99']:.1f} ms; {_statuses(run)}",
    )
    missed = f", {fresh['missed']} of {fresh['probes']} probes never seen" if fresh["missed"] else ""
    return [
        held,
        Figure(
            "sustained_not_202",
            f"SUSTAINED answers other than 202, {seconds}",
            run["not_ok"],
            "requests",
            note=_statuses(run),
        ),
        Figure(
            "sustained_freshness_p50",
            "SUSTAINED freshness p50 (probes through the run)",
            fresh["ms"]["p50"],
            "ms",
            note=f"n={fresh['ms']['n']}{missed}",
        ),
        _at_most(
            Figure(
                "sustained_freshness_p99",
                "SUSTAINED freshness p99 (probes through the run)",
                fresh["ms"]["p99"],
                "ms",
                note=f"n={fresh['ms']['n']}{missed}",
            ),
            FRESHNESS_P99_MAX_MS,
        ),
        Figure(
            "sustained_backlog_max",
            "SUSTAINED backlog max (published - applied events)",
            run["backlog_max_events"],
            "events",
            note=f"sampled every 1 s ({run['backlog_samples_during']} samples in the run); "
            f"ingest messages ready max {run['ingest_messages_max']}",
        ),
    ]


def _timed_out(run: dict[str, Any]) -> str:
    # A run whose pipeline did not finish within the drain timeout counts only what was applied.
    return "" if run["complete"] else " (DRAIN TIMED OUT)"


def _messages_figures(probes: dict[str, Any]) -> list[Figure]:
    figs = []
    for partitions, probe in sorted(probes.items(), key=lambda item: int(item[0])):
        touched = probe["partitions_touched_per_request_mean"]
        for mode, how in (("sequential", "one by one"), ("concurrent", f"{probe['concurrent']['threads']} threads")):
            run = probe[mode]
            figs.append(
                _at_most(
                    Figure(
                        f"messages_per_request_p{partitions}_{mode}",
                        f"messages per request, P={partitions}, {probe['events_per_request']} events, {how}",
                        run["messages_per_request"],
                        "msgs",
                        f"{run['messages']} msgs for {run['requests']} requests; "
                        f"a message per partition touched would be {touched:.1f}",
                    ),
                    MESSAGES_PER_REQUEST_MAX,
                )
            )
    return figs


# Issue 12's targets for the overload run.
OVERLOAD_ACCEPTED_MIN = 0.9  # x the max sustained rate, at 3x
OVERLOAD_FRESHNESS_P99_MAX_MS = 5000
OVERLOAD_RECOVERY_MAX_S = 10


def _overload_figures(run: dict[str, Any]) -> list[Figure]:
    """Per phase: offered and accepted events/s, answers' shares, backlog, freshness; then recovery and totals."""
    figs = []
    best = run["max_sustained_events_per_s"]
    bound = run["bound_events"]
    last = list(run["phases"])[-1]
    for name, phase in run["phases"].items():
        key = f"overload_{name}"
        keys = "; ".join(
            f"{who} ({k['share_of_offer']:.0%} of offer): "
            + ", ".join(f"{status} x{count}" for status, count in k["statuses"].items())
            for who, k in phase["by_key"].items()
        )
        figs.append(
            Figure(
                f"{key}_offered",
                f"OVERLOAD {name} offered (open loop, not resent)",
                phase["offered_events_per_s"],
                "events/s",
                "max sustained",
                best,
                _ratio(phase["offered_events_per_s"], best),
            )
        )
        accepted = Figure(
            f"{key}_accepted", f"OVERLOAD {name} accepted (202)", phase["accepted_events_per_s"], "events/s"
        )
        accepted.baseline_label, accepted.baseline = "max sustained", best
        figs.append(_at_least(accepted, OVERLOAD_ACCEPTED_MIN) if name == last else accepted)
        if accepted.ratio is None:
            accepted.ratio = _ratio(accepted.value, best)
        for status in ("202", "503", "429"):
            note = keys if status == "429" else f"{phase['requests']} requests"
            figs.append(
                Figure(
                    f"{key}_share_{status}",
                    f"OVERLOAD {name} share answered {status}",
                    100.0 * phase["shares"][status],
                    "%",
                    note=note,
                )
            )
        for who, k in phase["by_key"].items():
            figs.append(
                Figure(
                    f"{key}_429_{who}",
                    f"OVERLOAD {name} {who} key ({k['share_of_offer']:.0%} of offer) share answered 429",
                    None if k["share_429"] is None else 100.0 * k["share_429"],
                    "%",
                    note=f"{k['requests']} requests; {k['accepted_events']:,} of {k['offered_events']:,} events in",
                )
            )
        figs.append(
            Figure(
                f"{key}_failures",
                f"OVERLOAD {name} 5xx other than 503, or no answer",
                phase["failures"],
                "requests",
                target="= 0",
                met=phase["failures"] == 0,
                note=f"statuses {phase['statuses']}",
            )
        )
        # The monitor reads the backlog every check interval: what is admitted in one
        # interval lands on top of the bound before the next reading refuses it.
        allowance = run["check_seconds"] * phase["offered_events_per_s"]
        backlog = phase["backlog_max_events"]
        figs.append(
            Figure(
                f"{key}_backlog_max",
                f"OVERLOAD {name} backlog max (published - applied)",
                backlog,
                "events",
                target=f"<= {bound:,} + {allowance:,.0f}",
                met=None if backlog is None else backlog <= bound + allowance,
                note=f"bound {bound:,} + one {run['check_seconds']:g} s monitor interval of offered events; "
                f"sampled every 0.5 s; ingest messages max {phase['ingest_messages_max']}",
            )
        )
        fresh = phase["freshness_ms"]
        missed = f", {phase['probes_missed']} of {phase['probes']} probes never seen" if phase["probes_missed"] else ""
        figs.append(
            _at_most(
                Figure(
                    f"{key}_freshness_p99",
                    f"OVERLOAD {name} freshness p99 (from the probe's 202)",
                    fresh["p99"],
                    "ms",
                    note=f"p50 {fresh['p50']:.0f} ms, n={fresh['n']}{missed}; probes waited for a 202 "
                    f"p99 {phase['probe_admit_wait_ms']['p99']:.0f} ms",
                ),
                OVERLOAD_FRESHNESS_P99_MAX_MS,
            )
        )
    recovery = run["recovery"]
    recovered = recovery["recovered_s"]
    figs.append(
        Figure(
            "overload_recovery_s",
            "OVERLOAD recovery: freshness p99 back under 250 ms after",
            recovery["probed_s"] if recovered is None else recovered,
            "s",
            target=f"<= {OVERLOAD_RECOVERY_MAX_S} s",
            met=recovered is not None and recovered <= OVERLOAD_RECOVERY_MAX_S,
            note=(
                f"NOT RECOVERED within {recovery['probed_s']:.1f} s of probing"
                if recovered is None
                else f"{recovery['window_probes']} consecutive probes 0.5 s apart under {recovery['target_ms']:g} ms"
            ),
        )
    )
    eo = run["exactly_once"]
    exact = eo["applied_points"] == eo["accepted_points"] and eo["applied_events"] == eo["accepted_events"]
    unknown = f"; {eo['unknown_points']} points got no answer" if eo["unknown_points"] else ""
    figs.append(
        Figure(
            "overload_exactly_once",
            "OVERLOAD exactly once: board total / accepted points",
            _ratio(eo["applied_points"], eo["accepted_points"]),
            "x",
            target="= 1 (nothing lost or doubled)",
            met=exact,
            note=f"{eo['applied_points']:,} of {eo['accepted_points']:,} points, {eo['applied_events']:,} of "
            f"{eo['accepted_events']:,} event ids{'' if eo['drained'] else ' (DRAIN TIMED OUT)'}{unknown}",
        )
    )
    return figs


def _pipeline_figures(raw: dict[str, Any]) -> list[Figure]:
    """From the workers' logs during the one-board merge_tree runs: root rate, levels, transactions."""
    mt = raw["strategies"]["merge_tree"]
    window = raw["merge_window_ms"]
    _, conc = _best_uniform(mt["e2e"])
    run = mt["root_runs"][f"uniform/c{conc}"]
    figs = [
        _at_most(
            Figure(
                "root_runs_per_board_per_s",
                f"root runs per board per s at max load (hot board, c={conc})",
                run["per_s"],
                "/s",
                f"{run['roots']} roots in {run['seconds']:.2f} s (first send to idle), window {window} ms",
            ),
            1000 / window,
        )
    ]
    levels = mt["rank_tasks"]["roots"]["levels"]
    hist = "levels:roots " + (", ".join(f"{k}:{v}" for k, v in levels.items()) or "none ran")
    figs.append(Figure("merge_levels_mean", "merge levels per root, mean", levels_mean(levels), "levels", hist))
    txn = mt["ingest_tasks"]["transactions"]
    note = f"{txn['count']} transactions; messages:transactions " + ", ".join(
        f"{k}:{v}" for k, v in txn["messages_histogram"].items()
    )
    for what in ("events", "messages"):
        value = per_transaction(txn, what)
        figs.append(Figure(f"{what}_per_transaction_mean", f"{what} per ingest transaction, mean", value, what, note))
    return figs


def _runtime(key: str, label: str, ms: dict[str, float] | None, missing: str) -> Figure:
    if not ms:
        return Figure(key, label, None, "ms", missing)
    return Figure(key, label, ms["mean"], "ms", f"p99 {ms['p99']:.2f} ms, n={ms['n']}")


def _task_figures(strategies: dict[str, Any]) -> list[Figure]:
    """Per-task runtimes from the workers' logs: the merge levels, the roots' levels, the ingest batches."""
    figs = []
    mt = strategies["merge_tree"]["rank_tasks"]
    for key, name, label in (
        ("merge_root_ms", "tasks.ranking.run_root", "merge root (run_root) mean"),
        ("merge_span_ms", "tasks.ranking.merge_span", "merge level 1 of a chord tree (merge_span) mean"),
        ("merge_inner_ms", "tasks.ranking.merge_rows", "merge levels 2+ (merge_rows) mean"),
        ("merge_finish_ms", "tasks.ranking.finish_round", "root publish after a tree (finish_round) mean"),
    ):
        note = "no root ran" if name.endswith("run_root") else "not run (no round needed a chord tree)"
        figs.append(_runtime(key, label, mt["tasks"].get(name, {}).get("ms"), note))
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
    rows = [("figure", "value", "unit", "baseline", "ratio", "vs exactly-once", "target", "result", "note")]
    for f in figs:
        baseline = "" if f.baseline is None else f"{f.baseline_label} {_num(f.baseline, f.unit)}"
        result = "-" if f.met is None else ("met" if f.met else "MISSED")
        ratio = "-" if f.ratio is None else f"{f.ratio:.2f}x"
        exact = "" if f.ratio_exactly_once is None else f"{f.ratio_exactly_once:.2f}x"
        value = _num(f.value, f.unit)
        rows.append((f.label, value, f.unit, baseline.strip(), ratio, exact, f.target, result, f.note))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = []
    for n, row in enumerate(rows):
        cells = [c.rjust(w) if i in (1, 4, 5) else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))]
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
