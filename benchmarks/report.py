"""The benchmark report: machine and versions, the results table, ratios, details."""

from __future__ import annotations

import os
import platform
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from benchmarks.commandstats import client_commands_per_job
from benchmarks.results import ImplResult, SuiteResult, paired_ratio
from benchmarks.tables import (
    NA,
    close_table,
    commands_table,
    median_commands,
    ms,
    per_run_table,
    processes_section,
    rate,
    redis_cost_table,
    row,
    spread_table,
)

_MIB = 2**20


def cpu_model() -> str:
    """The CPU model name from ``/proc/cpuinfo``."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def nproc() -> int:
    """Processors available to this process (what ``nproc`` prints)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


@dataclass(frozen=True)
class Environment:
    """Where and how the benchmark ran."""

    command: str
    date: datetime
    loop: str
    job_options: str
    node: str
    #: The load averages (1, 5, 15 min) when the run started and when it ended.
    load: tuple[tuple[float, float, float], tuple[float, float, float]] | None = None


@dataclass(frozen=True)
class _Column:
    title: str
    value: Callable[[ImplResult], float | None]
    fmt: Callable[[float], str]
    metrics: tuple[str, ...]
    #: The metric measured in every run by both sides, whose ratio rows are the median of
    #: the runs' own ratios rather than a ratio of medians.
    paired: str | None = None



def _cmds(v: float) -> str:
    return f"{v:.2f}"


def _mib(v: float) -> str:
    return f"{v / _MIB:.1f}"



def _client_cmds(scenario: str) -> Callable[[ImplResult], float | None]:
    def value(result: ImplResult) -> float | None:
        if scenario in result.errors:
            return None
        per_job = median_commands(result, scenario)
        return client_commands_per_job(per_job) if per_job is not None else None

    return value


def _metric(name: str) -> Callable[[ImplResult], float | None]:
    return lambda result: result.median(name)


def _timed(title: str, metric: str, fmt: Callable[[float], str],
           scenario: str | None = None) -> _Column:
    """A column measured by both sides in every run (a rate or a latency)."""
    return _Column(title, _metric(metric), fmt, (scenario or metric,), paired=metric)


def _rss_growth(first: int, last: int) -> Callable[[ImplResult], float | None]:
    def value(result: ImplResult) -> float | None:
        low, high = result.median(f"rss_{first}"), result.median(f"rss_{last}")
        return high / low if low and high else None

    return value


def _columns(result: SuiteResult) -> list[_Column]:
    columns = [
        _timed("add one (jobs/s)", "add_one", rate),
        _timed("50 in flight (jobs/s)", "add_in_flight", rate),
        _timed("bulk \u00d71000 (jobs/s)", "add_bulk", rate),
        _timed("process c=1 (jobs/s)", "process_c1", rate),
        _timed("process c=50 (jobs/s)", "process_c50", rate),
        _timed("scheduler-fed c=50 (jobs/s)", "process_scheduled", rate),
        _timed("add→done p50 (ms)", "latency_p50", ms, "latency"),
        _timed("add→done p99 (ms)", "latency_p99", ms, "latency"),
        _timed("stream reader p50 (ms)", "stream_p50", ms, "latency"),
        _Column("client cmds/job c=1", _client_cmds("process_c1"), _cmds, ("process_c1",)),
        _Column("client cmds/job c=50", _client_cmds("process_c50"), _cmds, ("process_c50",)),
    ]
    checkpoints = sorted(result.options.rss_checkpoints)
    for n in checkpoints:
        columns.append(_Column(f"RSS after {n:,} jobs (MiB)", _metric(f"rss_{n}"), _mib, ("rss",)))
    if len(checkpoints) >= 2:
        first, last = checkpoints[0], checkpoints[-1]
        columns.append(
            _Column(
                f"RSS growth {first:,} \u2192 {last:,}",
                _rss_growth(first, last),
                lambda v: f"{v:.2f}",
                ("rss",),
            )
        )
    return columns



def _cell(result: ImplResult, column: _Column) -> str:
    if result.unavailable is not None:
        return NA
    if any(metric in result.errors for metric in column.metrics):
        return "error"
    value = column.value(result)
    return column.fmt(value) if value is not None else NA


def results_table(result: SuiteResult) -> list[str]:
    """The main table: one row per implementation, then the ratio rows."""
    columns = _columns(result)
    lines = [
        row(["implementation", *(c.title for c in columns)]),
        row(["---"] * (len(columns) + 1)),
    ]
    by_key = {r.key: r for r in result.results}
    for impl in result.results:
        label = impl.label if impl.unavailable is None else f"{impl.label}: {impl.unavailable}"
        lines.append(row([label, *(_cell(impl, c) for c in columns)]))
    for top, bottom in (("queuekit", "bullmq"), ("queuekit", "node"), ("bullmq", "node")):
        a, b = by_key.get(top), by_key.get(bottom)
        if a is None or b is None or a.unavailable is not None or b.unavailable is not None:
            continue
        cells = []
        for column in columns:
            paired = paired_ratio(a, b, column.paired) if column.paired else None
            if paired is not None:
                cells.append(f"{paired:.2f}")
                continue
            x, y = column.value(a), column.value(b)
            cells.append(f"{x / y:.2f}" if x is not None and y else NA)
        lines.append(row([f"*{a.label} / {b.label}*", *cells]))
    return lines


def _load(values: tuple[float, float, float]) -> str:
    return " / ".join(f"{value:.2f}" for value in values)


def render(result: SuiteResult, env: Environment) -> str:
    """The whole report as markdown."""
    opts = result.options
    versions: dict[str, str] = {}
    for impl in result.results:
        versions.update(impl.versions)
    rss = ", ".join(f"{n:,}" for n in sorted(opts.rss_checkpoints))
    out = [
        "# queuekit benchmarks",
        "",
        f"Command: `{env.command}`  ",
        f"Date: {env.date:%Y-%m-%d %H:%M} UTC (the run took {result.elapsed_s / 60:.1f} min)",
        "",
        "| | |",
        "| --- | --- |",
        f"| machine | {nproc()} CPUs (`nproc`), {cpu_model()} |",
        f"| Redis | {result.redis_version}, its own `redis-server` on loopback, persistence off |",
        f"| Python | {platform.python_version()}, event loop: {env.loop} |",
        f"| Node | {env.node} |",
        *([f"| load average (1/5/15 min) | {_load(env.load[0])} at the start, "
           f"{_load(env.load[1])} at the end (the machine may be shared) |"] if env.load else []),
        *(f"| {name} | {version} |" for name, version in versions.items() if name != "node"),
        "",
        "## Results",
        "",
        f"{opts.jobs:,} jobs per scenario, median of {opts.runs} run(s); memory from one run. "
        "Higher is better for jobs/s, lower for the rest. Ratio rows: for a column every run "
        "measured on both sides (the jobs/s and the latencies), the median of the runs' own "
        "ratios (in a run the sides take turns, so its ratio compares them over the same "
        "stretch of time; the table *in each run* below lists them, and the ratio of the two "
        "medians beside them); for the rest, the ratio of the values.",
        "",
        *results_table(result),
        "",
    ]
    unavailable = [r for r in result.results if r.unavailable is not None]
    for impl in unavailable:
        out += [f"{impl.key}: {impl.unavailable}", ""]
    errors = [(r.label, s, e) for r in result.results for s, e in r.errors.items()]
    if errors:
        out += ["Failed measurements:", "", *(f"- {label}, {s}: {e}" for label, s, e in errors), ""]
    if result.repeated:
        out += ["Runs measured again after a side failed in them (the values are the second "
                "try's):", "", *(f"- {line}" for line in result.repeated), ""]
    out += [
        "## How it is measured",
        "",
        f"- Job options: {env.job_options}.",
        "- Every measurement uses a fresh queue on the same Redis; its keys are deleted after.",
        "- *add one*: one `add` at a time, each awaited. *50 in flight*: 50 concurrent lanes, "
        "each awaiting its add before starting the next. *bulk*: `addBulk` / `add_jobs` in "
        "chunks of 1,000. Each side keeps one producer open in a process of its own (after "
        "one warm-up add and, in turns, 2,500 untimed jobs of the same scenario: the "
        "steady state) and the "
        "sides take turns in slices (250 adds one at a time, 1,000 in flight, one bulk "
        "call), in a balanced order: every side's slice follows every other side's equally "
        "often (a slice runs 15-30 % faster after raw bullmq's CPU-heavy one, so a plain "
        "rotation, where each side always follows the same one, favoured one side); each "
        "slice is timed by its side "
        "and a side's rate is its jobs over the sum of its slices (so all sides share the "
        "same stretch of a shared machine's time).",
        "- *process c=1 / c=50*: each side's worker (a no-op processor) runs in a process "
        f"of its own (Python: {env.loop} loop) on a queue paused before it started; the "
        "sides take turns in slices of 1,000 jobs (after 2,500 untimed), the same way: the "
        "slice's jobs are "
        "added to the paused queue (untimed), and the clock runs from resuming the queue "
        "until the queue's counts show nothing waiting or running, when it is paused "
        "again. Starting the worker is outside the clock. *scheduler-fed*: measured on "
        "its own, from constructing the worker (so it includes the start).",
        f"- *add→done*: {opts.latency_samples:,} jobs added one at a time while a worker "
        "(concurrency 1, own process) runs; wall clock from calling `add` until the "
        "application's own wait returns: `wait_for_job` for queuekit, "
        "`job.waitUntilFinished(queueEvents)` for Node BullMQ (raw bullmq has no such call: "
        "it reads the events stream). *stream reader*: the same, a second pass, waiting "
        "with one shared reader of the queue's BullMQ events stream for every "
        "implementation. Each side's producer and worker run in processes of their own; "
        "the sides take turns in batches of 50 samples, after 20 dropped warm-up samples "
        "a side and pass.",
        "- *client cmds/job*: `INFO commandstats` deltas over the worker run divided by the "
        "jobs, counting commands that clients send (EVALSHA, BZPOPMIN, MULTI/EXEC, ...); "
        "Redis also counts the commands Lua scripts run, shown as *all* below.",
        f"- *RSS*: resident memory of the worker process (concurrency 50) after {rss} jobs "
        "processed, from one run.",
        "",
        "## Redis commands per job",
        "",
        *commands_table(result),
        "",
        "## Redis-side cost per job",
        "",
        "Redis executes commands on one core, so the Redis time a job costs caps the "
        "throughput of any number of workers: *command µs/job* is the `usec` of "
        "`INFO commandstats` over the run for client commands (scripts include the "
        "commands they run), *Redis CPU µs/job* the server's `used_cpu_user + "
        "used_cpu_sys` (command time plus reading and writing sockets); *cap* is "
        "1,000,000 / Redis CPU µs per job, *of the cap* how close the measured rate gets. "
        "Medians over the runs. commandstats times are wall clock inside each command: on "
        "a loaded machine they include time Redis was preempted and can exceed the CPU "
        "column.",
        "",
        *redis_cost_table(result),
        "",
        "## Worker shutdown",
        "",
        "Time the worker's graceful close took after its last slice (not part of the "
        "throughput above; median over the runs).",
        "",
        *close_table(result),
        "",
    ]
    out += processes_section(result)
    if opts.runs > 1:
        out += ["## Spread over the runs (min\u2013max)", "", *spread_table(result), ""]
        per_run = per_run_table(result)
        if per_run:
            out += ["## queuekit / Node BullMQ in each run", "",
                    "Each run's own ratio (the same Redis, the sides taking turns in "
                    "slices); above 1 is ahead for jobs/s, below 1 for the latencies.", "",
                    *per_run, ""]
    return "\n".join(out)


def now() -> datetime:
    """The current time in UTC."""
    return datetime.now(UTC)
