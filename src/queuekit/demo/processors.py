"""Example processors for the demo's queues (no real bank, mail or report behind them).

They are :class:`~queuekit.processors.WorkerHost` classes, provided by the demo plugin
(:mod:`queuekit.demo.plugin`); the bank-sync processor gets its bank client injected.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time

from queuekit.jobs import JobContext, JobResult
from queuekit.payloads import BankSyncJobData, NotificationJobData, ReportJobData
from queuekit.processors import WorkerHost, processor
from queuekit.queues import QueueName

log = logging.getLogger("queuekit.demo")

#: Accounts whose first sync attempt fails (a bank timing out), to show a retry.
FLAKY_ACCOUNTS = frozenset({"acc-flaky"})
#: Seconds of simulated work per step.
STEP = 0.05


class DemoBankApi:
    """A stand-in for a bank's API: pages of transactions, and one account that times out
    on the first attempt."""

    async def fetch_page(self, account_id: str, page: int, attempt: int) -> None:
        """Fetch one page of transactions (simulated)."""
        if account_id in FLAKY_ACCOUNTS and attempt == 0:
            raise ConnectionError(f"bank API timed out for account {account_id}")
        await asyncio.sleep(STEP)


@processor(QueueName.BANK_SYNC)
class BankSyncProcessor(WorkerHost[BankSyncJobData]):
    """Fetch transactions page by page, reporting progress."""

    def __init__(self, bank_api: DemoBankApi) -> None:
        self.bank_api = bank_api

    async def process(self, job: JobContext[BankSyncJobData]) -> JobResult:
        """Sync 2 pages (incremental) or 4 (full)."""
        pages = 4 if job.data.sync_type == "full" else 2
        for page in range(1, pages + 1):
            await self.bank_api.fetch_page(job.data.account_id, page, job.attempts_made)
            await job.update_progress(page * 100 // pages)
        await job.log(f"synced {pages} page(s)")
        return JobResult(success=True, message=f"synced account {job.data.account_id}",
                         data={"pages": pages})


@processor(QueueName.NOTIFICATIONS)
class NotificationProcessor(WorkerHost[NotificationJobData]):
    """Render and send one notification."""

    async def process(self, job: JobContext[NotificationJobData]) -> JobResult:
        """Pretend to send it."""
        await asyncio.sleep(STEP)
        await job.update_progress(100)
        return JobResult(success=True,
                         message=f"{job.data.type} sent with {job.data.template_id}")


@processor(QueueName.REPORTS)
class ReportProcessor(WorkerHost[ReportJobData]):
    """Build a report over the requested period.

    Report generation is CPU work, so ``process`` is a plain ``def``: it runs off the event
    loop (``worker.sync_pool``: threads by default, ``process`` for a pool of processes),
    and the worker keeps renewing locks and running other jobs meanwhile. It reports with
    the blocking ``update_progress_sync``.
    """

    def process(self, job: JobContext[ReportJobData]) -> JobResult:
        """Crunch the period in four steps (simulated: hashing for STEP seconds each)."""
        days = (job.data.end_date - job.data.start_date).days + 1
        digest = hashlib.sha256(f"{job.data.user_id}:{job.data.report_type}".encode())
        for step in (25, 50, 75, 100):
            deadline = time.perf_counter() + STEP
            while time.perf_counter() < deadline:
                digest.update(digest.digest())
            job.update_progress_sync(step)
        return JobResult(success=True,
                         message=f"{job.data.report_type} report over {days} day(s)",
                         data={"days": days})
