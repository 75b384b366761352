"""``queuekit demo``: the application container end to end, with a summary table."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from queuekit.demo.plugin import DEMO_PLUGIN
from queuekit.demo.services import BankingService, NotificationService, ReportService
from queuekit.jobs import JobInfo
from queuekit.runtime.host import Host, HostFactory
from queuekit.service import QueueService
from queuekit.settings import QueuekitSettings

T = TypeVar("T")

log = logging.getLogger("queuekit.demo")


@dataclass(frozen=True)
class DemoRow:
    """One line of the summary."""

    job: str
    queue: str
    state: str
    attempts: int
    duration_ms: int | None
    note: str


def _row(info: JobInfo) -> DemoRow:
    duration = None
    if info.created_at and info.finished_at:
        duration = int((info.finished_at - info.created_at).total_seconds() * 1000)
    note = ""
    result = info.return_value
    if info.failed_reason and info.state == "failed":
        note = info.failed_reason
    elif getattr(result, "message", None):
        note = str(result.message)
    if info.attempts_made > 1:
        note = f"{note} (retried)" if note else "retried"
    if info.delay:
        note = f"{note}; delayed {info.delay} ms" if note else f"delayed {info.delay} ms"
    return DemoRow(f"{info.name}#{info.id}", info.queue, str(info.state), info.attempts_made,
                   duration, note)


def format_table(rows: list[DemoRow]) -> str:
    """The summary as an aligned text table."""
    header = ("job", "queue", "state", "attempts", "duration", "note")
    lines = [header] + [
        (r.job, r.queue, r.state, str(r.attempts),
         "-" if r.duration_ms is None else f"{r.duration_ms} ms", r.note)
        for r in rows
    ]
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    out = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
           for line in lines]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)


async def _service(host: Host, name: str, kind: type[T]) -> T:
    service = await host.get(name)
    if not isinstance(service, kind):  # pragma: no cover - another plugin took the name
        raise TypeError(f"{name} is a {type(service).__name__}, not {kind.__name__}")
    return service


async def run_demo(settings: QueuekitSettings, open_host: HostFactory, *,
                   timeout: float = 25.0,
                   then: Callable[[Host], Awaitable[object]] | None = None) -> list[DemoRow]:
    """Start the application (its workers too), enqueue jobs of each kind, wait, shut
    down; ``then(host)`` runs before the shutdown (``demo --dashboard`` serves there)."""
    if DEMO_PLUGIN not in settings.plugins:  # a configuration of another host
        settings = settings.model_copy(update={"plugins": [*settings.plugins, DEMO_PLUGIN]})
    started = time.monotonic()
    async with open_host(settings, workers=True) as host:
        qs = host.service
        banking = await _service(host, "banking_service", BankingService)
        notifications = await _service(host, "notification_service", NotificationService)
        reports = await _service(host, "report_service", ReportService)
        today = dt.date.today()
        jobs = [
            await banking.sync_bank_account("user-1", "acc-checking"),
            await banking.sync_bank_account("user-1", "acc-savings", full=True),
            await banking.sync_bank_account("user-2", "acc-flaky"),
            await notifications.notify("user-1", "welcome"),
            await notifications.notify("user-2", "statement-ready", channel="push",
                                       delay_ms=1500),
            await reports.request_report("user-1", "monthly", today.replace(day=1), today),
            await reports.request_report("user-2", "annual", today.replace(month=1, day=1),
                                         today),
        ]
        for job in jobs:
            print(f"queued {job.name}#{job.id} on {job.queue} ({job.state})", flush=True)
        infos = await asyncio.gather(
            *(_watch(qs, job, started + timeout) for job in jobs)
        )
        if then is not None:
            await then(host)
    return [_row(info) for info in infos]


async def _watch(qs: QueueService, job: JobInfo, deadline: float) -> JobInfo:
    """Print progress as it changes, return the finished job."""
    last: object = None
    while True:
        info = await qs.get_job(job.queue, job.id)
        if info is None:
            raise RuntimeError(f"job {job.id} on {job.queue} disappeared")
        if info.progress != last and info.progress:
            print(f"  {job.queue:<13} {job.name}#{job.id}: progress {info.progress}", flush=True)
            last = info.progress
        if info.state.finished:
            return info
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return info
        try:
            return await qs.wait_for_job(job.queue, job.id, timeout=min(0.05, remaining))
        except TimeoutError:
            continue
