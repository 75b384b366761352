"""What the monitoring commands compute and print: queue stats, job lists, health.

Everything reads through the public ``QueueService`` API, so a host can serve the same
numbers from its own health endpoint.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Collection, Sequence

from queuekit.errors import QueuekitError
from queuekit.jobs import JobInfo
from queuekit.records import HealthReport
from queuekit.runtime.plugins import PluginSet
from queuekit.runtime.runner import worker_enabled
from queuekit.service import QueueService
from queuekit.settings import QueuekitSettings

#: The columns of ``queuekit stats``.
STATS_COLUMNS: tuple[str, ...] = ("waiting", "active", "delayed", "prioritized", "completed",
                                  "failed", "paused")
#: Longest failed reason ``queuekit jobs`` prints in its table.
REASON_WIDTH = 60


async def collect_stats(service: QueueService,
                        queues: Sequence[str] | None = None) -> dict[str, dict[str, int]]:
    """Job counts per state of ``queues`` (default: every known queue), by queue."""
    names = list(queues) if queues else await service.list_queues()
    counts = await asyncio.gather(*(service.get_job_counts(q) for q in names))
    return dict(zip(names, counts, strict=True))


def format_table(header: Sequence[str], rows: Sequence[Sequence[str]],
                 right: Collection[int] = ()) -> str:
    """An aligned text table; columns whose index is in ``right`` are right-aligned."""
    lines = [list(header), *[list(r) for r in rows]]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]

    def render(line: Sequence[str]) -> str:
        cells = [cell.rjust(w) if i in right else cell.ljust(w)
                 for i, (cell, w) in enumerate(zip(line, widths, strict=True))]
        return "  ".join(cells).rstrip()

    out = [render(line) for line in lines]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)


def format_stats(stats: dict[str, dict[str, int]]) -> str:
    """``queuekit stats``: one row per queue, one column per state."""
    rows = [[queue, *(str(counts.get(state, 0)) for state in STATS_COLUMNS)]
            for queue, counts in stats.items()]
    return format_table(("queue", *STATS_COLUMNS), rows,
                        right=range(1, len(STATS_COLUMNS) + 1))


def format_age(seconds: float) -> str:
    """A duration as its largest unit: ``42s``, ``5m``, ``3h``, ``2d``."""
    seconds = max(0, int(seconds))
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def job_age(job: JobInfo, now: dt.datetime | None = None) -> float:
    """Seconds since ``job`` was added (0 when unknown)."""
    if job.created_at is None:
        return 0.0
    now = now or dt.datetime.now(dt.UTC)
    return (now - job.created_at).total_seconds()


def format_jobs(jobs: Sequence[JobInfo], now: dt.datetime | None = None) -> str:
    """``queuekit jobs``: id, name, attempts made of allowed, failed reason, age."""
    rows = []
    for job in jobs:
        reason = " ".join((job.failed_reason or "").split())
        if len(reason) > REASON_WIDTH:
            reason = reason[:REASON_WIDTH - 3] + "..."
        rows.append([job.id, job.name, f"{job.attempts_made}/{job.max_attempts}", reason,
                     format_age(job_age(job, now))])
    return format_table(("id", "name", "attempts", "failed reason", "age"), rows, right={2, 4})


def job_summary(job: JobInfo, now: dt.datetime | None = None) -> dict[str, object]:
    """One job of ``queuekit jobs --json``."""
    return {"id": job.id, "name": job.name, "state": str(job.state),
            "attempts_made": job.attempts_made, "max_attempts": job.max_attempts,
            "failed_reason": job.failed_reason, "age_seconds": round(job_age(job, now), 3)}


def expected_workers(settings: QueuekitSettings, plugins: PluginSet) -> list[str]:
    """The queues whose workers this configuration runs: those with a plugin processor
    that ``worker.enabled`` / ``worker.queues`` allow."""
    return [q for q in plugins.processor_queues() if worker_enabled(settings, q)]


async def check_health(service: QueueService, workers: Sequence[str]) -> HealthReport:
    """``service.health()`` plus: is a worker (of any process) connected to each queue of
    ``workers``?"""
    base = await service.health()
    reasons = list(base.reasons)
    running: dict[str, bool] = dict(base.workers)
    if base.redis == "ok":
        for queue in map(str, workers):
            try:
                count = await service.count_workers(queue)
            except QueuekitError as exc:
                reasons.append(f"cannot list the workers of {queue}: {exc}")
                continue
            running[queue] = count > 0
            if not count:
                reasons.append(f"no worker is running for queue {queue!r}")
    return HealthReport(ok=not reasons, backend=base.backend, redis=base.redis,
                        breaker=base.breaker, workers=running, reasons=tuple(reasons))


def format_health(report: HealthReport) -> str:
    """One line: ``ok: ...`` or ``unhealthy: <reason>; <reason>``."""
    if not report.ok:
        return "unhealthy: " + "; ".join(report.reasons)
    workers = ", ".join(sorted(q for q, up in report.workers.items() if up)) or "none expected"
    return (f"ok: {report.backend} store answers, circuit breaker {report.breaker}, "
            f"workers running for: {workers}")
