"""What the monitoring commands read, the same on both backends: job lists, retry, the
known queues and the workers connected to a queue."""

from __future__ import annotations

import pytest

from queuekit import (
    BankSyncJobData,
    JobContext,
    JobOptions,
    JobResult,
    JobState,
    PayloadValidationError,
    QueueName,
    QueueService,
    UnrecoverableError,
)
from tests.support.waiting import eventually

BANK = QueueName.BANK_SYNC


def sync(user: str) -> BankSyncJobData:
    return BankSyncJobData(user_id=user, account_id="a1", sync_type="incremental")


async def test_jobs_are_listed_retried_and_workers_counted(service: QueueService) -> None:
    async def process(job: JobContext[BankSyncJobData]) -> JobResult:
        if job.data.user_id.startswith("bad"):
            raise UnrecoverableError(f"account of {job.data.user_id} is closed")
        return JobResult(success=True)

    bad1, bad2, good, bad3 = [await service.add_job(BANK, "sync", sync(user))
                              for user in ("bad-1", "bad-2", "good", "bad-3")]
    worker = service.create_worker(BANK, process, concurrency=1)
    await eventually(lambda: service.count_workers(BANK), lambda n: n == 1)
    for job in (bad1, bad2, good, bad3):
        await service.wait_for_job(BANK, job.id, timeout=10)
    await worker.close()
    await eventually(lambda: service.count_workers(BANK), lambda n: n == 0)

    # Failed jobs newest first, cut at the limit, with their reason and attempts.
    failed = await service.get_jobs(BANK, JobState.FAILED, limit=2)
    assert [j.id for j in failed] == [bad3.id, bad2.id]
    assert failed[0].failed_reason == "account of bad-3 is closed"
    assert failed[0].attempts_made == 1
    assert failed[0].state == JobState.FAILED
    assert failed[0].data == sync("bad-3")
    assert [j.id for j in await service.get_jobs(BANK, "completed")] == [good.id]

    # Unfinished jobs in the order they run.
    w1, w2 = [await service.add_job(BANK, "sync", sync(user)) for user in ("w-1", "w-2")]
    later = await service.add_job(BANK, "sync", sync("later"), JobOptions(delay=60_000))
    urgent = await service.add_job(BANK, "sync", sync("urgent"), JobOptions(priority=5))
    assert [j.id for j in await service.get_jobs(BANK, "waiting")] == [w1.id, w2.id]
    assert [j.id for j in await service.get_jobs(BANK, "delayed")] == [later.id]
    assert [j.id for j in await service.get_jobs(BANK, "prioritized")] == [urgent.id]
    assert await service.get_jobs(BANK, "active") == []

    # Retry: every failed job back to waiting, behind the waiting ones, reason cleared.
    assert await service.retry_jobs(BANK) == 3
    counts = await service.get_job_counts(BANK)
    assert (counts["failed"], counts["waiting"], counts["completed"]) == (0, 5, 1)
    waiting = await service.get_jobs(BANK, "waiting", limit=10)
    assert [j.id for j in waiting] == [w1.id, w2.id, bad1.id, bad2.id, bad3.id]
    assert waiting[2].failed_reason is None
    assert waiting[2].attempts_made == 1
    assert await service.retry_jobs(BANK) == 0

    queues = await service.list_queues()
    assert BANK in queues
    assert set(service.registry) <= set(queues)
    assert queues == sorted(queues)

    with pytest.raises(PayloadValidationError, match="state"):
        await service.get_jobs(BANK, "finished")
    with pytest.raises(PayloadValidationError, match="limit"):
        await service.get_jobs(BANK, "failed", limit=0)
