"""Example processors for the demo's queues (no real bank, mail or report behind them)."""

from __future__ import annotations

import asyncio
import logging

from queuekit.jobs import JobContext, JobResult
from queuekit.payloads import BankSyncJobData, NotificationJobData, ReportJobData

log = logging.getLogger("queuekit.demo")

#: Accounts whose first sync attempt fails (a bank timing out), to show a retry.
FLAKY_ACCOUNTS = frozenset({"acc-flaky"})
#: Seconds of simulated work per step.
STEP = 0.05


async def process_bank_sync(job: JobContext[BankSyncJobData]) -> JobResult:
    """Fetch transactions page by page, reporting progress."""
    if job.data.account_id in FLAKY_ACCOUNTS and job.attempts_made == 0:
        raise ConnectionError(f"bank API timed out for account {job.data.account_id}")
    pages = 4 if job.data.sync_type == "full" else 2
    for page in range(1, pages + 1):
        await asyncio.sleep(STEP)
        await job.update_progress(page * 100 // pages)
    await job.log(f"synced {pages} page(s)")
    return JobResult(success=True, message=f"synced account {job.data.account_id}",
                     data={"pages": pages})


async def process_notification(job: JobContext[NotificationJobData]) -> JobResult:
    """Render and send one notification."""
    await asyncio.sleep(STEP)
    await job.update_progress(100)
    return JobResult(success=True, message=f"{job.data.type} sent with {job.data.template_id}")


async def process_report(job: JobContext[ReportJobData]) -> JobResult:
    """Build a report over the requested period."""
    days = (job.data.end_date - job.data.start_date).days + 1
    for step in (25, 50, 75, 100):
        await asyncio.sleep(STEP)
        await job.update_progress(step)
    return JobResult(success=True, message=f"{job.data.report_type} report over {days} day(s)",
                     data={"days": days})
