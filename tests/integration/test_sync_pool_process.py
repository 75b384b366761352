"""``worker.sync_pool: process``: a plain-def processor in a pool of spawned processes,
with its progress and log lines relayed to the job in Redis."""

from __future__ import annotations

import os

from queuekit import JobContext, JobResult, JobState, QueueName, RedisQueueService, ReportJobData
from queuekit.events import EventType
from tests.conftest import SettingsFactory

REPORTS = QueueName.REPORTS


def crunch(job: JobContext[ReportJobData]) -> JobResult:
    """Module level, so it pickles into the pool's processes."""
    for step in (10, 60, 100):
        job.update_progress_sync(step)
    job.log_sync(f"report for {job.data.user_id} built")
    return JobResult(success=True, data={"pid": os.getpid()})


async def test_a_plain_def_runs_in_a_process_and_its_progress_comes_back(
    make_settings: SettingsFactory,
) -> None:
    settings = make_settings(worker={"queue_sync_pool": {str(REPORTS): "process"}})
    service = await RedisQueueService.connect(settings)
    try:
        async with service.events(REPORTS) as events:
            jobs = [await service.add_job(REPORTS, "generate-report", {
                "userId": f"u{n}", "reportType": "monthly", "startDate": "2026-01-01",
                "endDate": "2026-01-31"}) for n in range(3)]
            service.create_worker(REPORTS, crunch, concurrency=2)
            infos = [await service.wait_for_job(REPORTS, job.id, timeout=60) for job in jobs]
            progress: dict[str, list[object]] = {}
            finished = 0
            async for event in events:
                if event.type == EventType.PROGRESS:
                    progress.setdefault(event.job_id or "", []).append(event.data)
                if event.type == EventType.COMPLETED:
                    finished += 1
                    if finished == len(jobs):
                        break
        logs = [await service.connection.client.lrange(
            f"{settings.redis.prefix}:{REPORTS}:{job.id}:logs", 0, -1) for job in jobs]
    finally:
        await service.close()
    assert [i.state for i in infos] == [JobState.COMPLETED] * 3
    pids = {i.return_value.data["pid"] for i in infos}
    assert os.getpid() not in pids
    assert all(i.progress == 100 for i in infos)
    assert all(progress[job.id] == [10, 60, 100] for job in jobs)
    assert logs == [[f"report for u{n} built"] for n in range(3)]


def crash_once(job: JobContext[ReportJobData]) -> JobResult:
    """The first attempt kills its pool process; the retry succeeds in a new pool."""
    if job.attempts_made == 0:
        os._exit(9)
    return JobResult(success=True, data={"pid": os.getpid()})


async def test_a_dead_pool_process_fails_the_attempt_and_the_pool_is_renewed(
    make_settings: SettingsFactory,
) -> None:
    settings = make_settings(worker={"sync_pool": "process"})
    service = await RedisQueueService.connect(settings)
    try:
        job = await service.add_job(REPORTS, "generate-report", {
            "userId": "u1", "reportType": "monthly", "startDate": "2026-01-01",
            "endDate": "2026-01-31"}, options={"attempts": 2, "backoff": 0})
        service.create_worker(REPORTS, crash_once, concurrency=1)
        info = await service.wait_for_job(REPORTS, job.id, timeout=60)
    finally:
        await service.close()
    assert info.state == JobState.COMPLETED
    assert info.attempts_made == 2
