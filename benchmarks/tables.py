"""The report's smaller tables: Redis commands and cost per job, the spread over the runs,
each run's own ratio, the worker's close, worker processes; and the cell formats the
report shares."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence

from benchmarks.commandstats import client_commands_per_job, is_client_command
from benchmarks.results import ImplResult, SuiteResult, run_ratios

NA = "\u2013"  # en dash


def rate(v: float) -> str:
    return f"{v:,.0f}"


def ms(v: float) -> str:
    return f"{v:.2f}"


def median_commands(result: ImplResult, scenario: str) -> dict[str, float] | None:
    runs = result.commands.get(scenario)
    if not runs:
        return None
    names = {name for run in runs for name in run}
    return {name: statistics.median(run.get(name, 0.0) for run in runs) for name in sorted(names)}


def row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"


SCENARIO_TITLES = {
    "add_one": "add one",
    "add_in_flight": "50 in flight",
    "add_bulk": "bulk \u00d71000",
    "process_c1": "process c=1",
    "process_c50": "process c=50",
    "process_scheduled": "scheduler-fed c=50",
}


def commands_table(result: SuiteResult) -> list[str]:
    """Redis commands per job of each scenario, from ``INFO commandstats`` deltas."""
    lines = [
        row(
            [
                "implementation",
                "scenario",
                "evalsha",
                "bzpopmin",
                "other client commands",
                "client total",
                "all, incl. inside Lua",
            ]
        ),
        row(["---"] * 7),
    ]
    for impl in result.results:
        for scenario, title in SCENARIO_TITLES.items():
            per_job = median_commands(impl, scenario)
            if per_job is None or scenario in impl.errors:
                continue
            others = [
                f"{name} {value:.3f}"
                for name, value in per_job.items()
                if is_client_command(name)
                and name not in ("evalsha", "bzpopmin")
                and value >= 0.0005
            ]
            lines.append(
                row(
                    [
                        impl.label,
                        title,
                        f"{per_job.get('evalsha', 0.0):.3f}",
                        f"{per_job.get('bzpopmin', 0.0):.3f}",
                        ", ".join(others) or NA,
                        f"{client_commands_per_job(per_job):.2f}",
                        f"{sum(per_job.values()):.1f}",
                    ]
                )
            )
    return lines


def redis_cost_table(result: SuiteResult) -> list[str]:
    """Redis-side cost per job and the cap it puts on throughput (Redis runs on one core)."""
    lines = [
        row(
            [
                "implementation",
                "scenario",
                "command µs/job (commandstats)",
                "Redis CPU µs/job",
                "cap (jobs/s)",
                "measured (jobs/s)",
                "of the cap",
            ]
        ),
        row(["---"] * 7),
    ]
    for impl in result.results:
        for scenario, title in SCENARIO_TITLES.items():
            usec = impl.median(f"{scenario}_redis_usec")
            cpu = impl.median(f"{scenario}_redis_cpu_usec")
            measured = impl.median(scenario)
            if usec is None or cpu is None or scenario in impl.errors:
                continue
            cap = 1e6 / cpu if cpu > 0 else None
            lines.append(
                row(
                    [
                        impl.label,
                        title,
                        f"{usec:.1f}",
                        f"{cpu:.1f}",
                        rate(cap) if cap else NA,
                        rate(measured) if measured else NA,
                        f"{measured / cap:.0%}" if cap and measured else NA,
                    ]
                )
            )
    return lines


TIMED: list[tuple[str, Callable[[float], str]]] = [
    ("add_one", rate),
    ("add_in_flight", rate),
    ("add_bulk", rate),
    ("process_c1", rate),
    ("process_c50", rate),
    ("process_scheduled", rate),
    ("latency_p50", ms),
    ("latency_p99", ms),
    ("stream_p50", ms),
]


def per_run_table(result: SuiteResult) -> list[str]:
    """queuekit / Node BullMQ of each run on its own (the runs' values in run order), their
    median, and the ratio of the two sides' medians beside it; a metric with a failed run on
    either side is left out."""
    by_key = {r.key: r for r in result.results if r.unavailable is None}
    ours, node = by_key.get("queuekit"), by_key.get("node")
    if ours is None or node is None:
        return []
    found = {m: r for m, _ in TIMED if (r := run_ratios(ours, node, m)) is not None}
    metrics = list(found)
    lines = [row(["run", *metrics]), row(["---"] * (len(metrics) + 1))]
    for run in range(min((len(r) for r in found.values()), default=0)):
        lines.append(row([str(run + 1), *(f"{found[m][run]:.2f}" for m in metrics)]))
    if metrics:
        lines.append(row(["*median*", *(f"{statistics.median(found[m]):.2f}" for m in metrics)]))
        of_medians = [
            f"{statistics.median(ours.values[m]) / statistics.median(node.values[m]):.2f}"
            for m in metrics]
        lines.append(row(["*ratio of the medians*", *of_medians]))
    return lines


def spread_table(result: SuiteResult) -> list[str]:
    """Minimum and maximum over the runs of each timed metric."""
    metrics = TIMED
    lines = [row(["implementation", *(m for m, _ in metrics)]), row(["---"] * (len(metrics) + 1))]
    for impl in result.results:
        if impl.unavailable is not None:
            continue
        cells = []
        for metric, fmt in metrics:
            values = impl.values.get(metric)
            cells.append(f"{fmt(min(values))}\u2013{fmt(max(values))}" if values else NA)
        lines.append(row([impl.label, *cells]))
    return lines


def close_table(result: SuiteResult) -> list[str]:
    """How long the graceful close of the worker took after each processing run."""
    lines = [row(["implementation", "after process c=1 (s)", "after process c=50 (s)"])]
    lines.append(row(["---"] * 3))
    for impl in result.results:
        if impl.unavailable is not None:
            continue
        cells = []
        for metric in ("process_c1_close_s", "process_c50_close_s"):
            value = impl.median(metric)
            cells.append(f"{value:.2f}" if value is not None else NA)
        lines.append(row([impl.label, *cells]))
    return lines


def processes_section(result: SuiteResult) -> list[str]:
    """``queuekit worker --processes 2`` against 1, when the scenario ran."""
    impl = next((r for r in result.results if r.median("processes_1")), None)
    if impl is None:
        return []
    one, two = impl.median("processes_1"), impl.median("processes_2")
    ratio = f"{two / one:.2f}" if one and two else NA
    return [
        "## Worker processes (queuekit)",
        "",
        "`queuekit worker --processes P --concurrency 50` on one queue of no-op jobs: the "
        "supervisor starts P worker processes; once all are connected the jobs are added in "
        "bulk, and the clock runs from the first add until the queue is drained (median "
        "over the runs).",
        "",
        row(["processes", "jobs/s"]),
        row(["---", "---"]),
        row(["1", rate(one) if one else NA]),
        row(["2", rate(two) if two else NA]),
        row(["*2 / 1*", ratio]),
        "",
    ]
