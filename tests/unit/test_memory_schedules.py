"""The in-memory backend's schedulers on its virtual clock: ``advance(ms)`` and autojump."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from zoneinfo import ZoneInfo

from queuekit import BankSyncJobData, JobContext, JobResult, QueueName
from queuekit.testing import InMemoryQueueService

BANK = QueueName.BANK_SYNC
SYNC = BankSyncJobData(user_id="u1", account_id="a1", sync_type="full")
DAY = 24 * 3600_000


def recorder(service: InMemoryQueueService, seen: list[int]):  # type: ignore[no-untyped-def]
    async def process(job: JobContext[BankSyncJobData]) -> JobResult:
        seen.append(service.clock.now_ms())
        return JobResult(success=True)

    return process


async def test_a_week_of_a_daily_cron_schedule_in_well_under_a_second() -> None:
    service = InMemoryQueueService()
    seen: list[int] = []
    service.create_worker(BANK, recorder(service, seen))
    await service.upsert_job_scheduler(BANK, "nightly", pattern="0 3 * * *",
                                       tz="Europe/Berlin", data=SYNC)
    started = time.perf_counter()
    await service.advance(7 * DAY)
    wall = time.perf_counter() - started
    assert len(seen) == 7
    berlin = [dt.datetime.fromtimestamp(ms / 1000, ZoneInfo("Europe/Berlin")) for ms in seen]
    assert {(t.hour, t.minute) for t in berlin} == {(3, 0)}
    assert len({t.date() for t in berlin}) == 7
    assert wall < 0.5, f"a week took {wall:.3f} s of wall time"
    info = await service.get_job_scheduler(BANK, "nightly")
    assert info is not None and info.iteration_count == 8  # 7 run, the 8th pending
    await service.close()


async def test_every_day_runs_now_then_daily_and_retries_run_inside_advance() -> None:
    service = InMemoryQueueService()
    attempts: list[tuple[int, int]] = []

    async def flaky(job: JobContext[BankSyncJobData]) -> JobResult:
        attempts.append((service.clock.now_ms(), job.attempts_made))
        if job.attempts_made == 0:
            raise RuntimeError("bank down")
        return JobResult(success=True)

    service.create_worker(BANK, flaky)
    start = service.clock.now_ms()
    await service.upsert_job_scheduler(BANK, "daily", every=DAY, data=SYNC,
                                       options={"attempts": 2,
                                                "backoff": {"type": "fixed", "delay": 60_000}})
    await service.advance(3 * DAY + 120_000)  # the last retry falls a minute after day 3
    # Four runs (now, +1, +2, +3 days), each failing once and retried a minute later.
    assert [made for _, made in attempts] == [0, 1] * 4
    retries = [t for t, made in attempts if made == 1]
    firsts = [t for t, made in attempts if made == 0]
    # The backoff runs from the failure, which is a few wall-clock ms after the start.
    assert all(60_000 <= r - f < 60_100 for f, r in zip(firsts, retries, strict=True))
    assert all(abs(f - start - i * DAY) < 1000 for i, f in enumerate(firsts))
    await service.close()


async def test_the_idle_clock_never_jumps_to_a_scheduler_run() -> None:
    service = InMemoryQueueService()  # autojump on
    seen: list[int] = []
    service.create_worker(BANK, recorder(service, seen))
    await service.upsert_job_scheduler(BANK, "daily", every=DAY, data=SYNC)
    for _ in range(50):  # let the idle worker wait as long as it likes
        await asyncio.sleep(0.002)
    assert len(seen) == 1  # the immediate first run only
    assert service.clock.skipped_ms < DAY
    # An ordinary delayed job is still jumped to; the daily run stays in the future.
    job = await service.add_job(BANK, "later", SYNC, {"delay": 5_000})
    info = await service.wait_for_job(BANK, job.id, timeout=5)
    assert info.state == "completed"
    assert 4_000 < service.clock.skipped_ms < DAY  # the jump is to the due time, less the ms spent
    assert len(seen) == 2
    await service.close()


async def test_advance_without_a_worker_leaves_due_runs_waiting() -> None:
    service = InMemoryQueueService()
    await service.upsert_job_scheduler(BANK, "hourly", every=3600_000, data=SYNC)
    await service.advance(5 * 3600_000)
    counts = await service.get_job_counts(BANK)
    assert counts["waiting"] == 1 and counts["delayed"] == 0  # nothing fetched: no advance
    await service.close()


async def test_the_schedulers_gauge_counts_per_queue() -> None:
    from queuekit.runtime.metrics import WorkerMetrics

    service = InMemoryQueueService()
    for n in range(2):
        await service.upsert_job_scheduler(BANK, f"s{n}", every=DAY, data=SYNC)
    metrics = WorkerMetrics()
    await metrics.refresh_depth(service, [BANK, QueueName.REPORTS])
    sample = metrics.registry.get_sample_value
    assert sample("queuekit_job_schedulers", {"queue": BANK}) == 2
    assert sample("queuekit_job_schedulers", {"queue": QueueName.REPORTS}) == 0
    await service.close()


async def test_advance_returns_with_due_jobs_on_a_queue_without_worker() -> None:
    service = InMemoryQueueService()
    await service.add_job(QueueName.REPORTS, "later",
                          {"userId": "u1", "reportType": "custom", "startDate": "2027-01-01",
                           "endDate": "2027-01-02"}, {"delay": 1000})
    await service.upsert_job_scheduler(BANK, "gone", every=60_000, data=SYNC)
    await service.remove_job_scheduler(BANK, "gone")  # a removed run stays in the heap
    start = service.clock.now_ms()
    await asyncio.wait_for(service.advance(5000), timeout=2)
    await asyncio.wait_for(service.advance(120_000), timeout=2)
    assert service.clock.now_ms() - start >= 125_000
    assert (await service.get_job_counts(QueueName.REPORTS))["delayed"] == 1  # not promoted
    await service.close()
