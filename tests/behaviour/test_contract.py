"""The QueueService contract, run against both backends (in-memory and real Redis)."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from queuekit import (
    BankSyncJobData,
    JobContext,
    JobNotFoundError,
    JobOptions,
    JobResult,
    JobState,
    JobTimeoutError,
    KeepJobs,
    NewJob,
    NotificationJobData,
    PayloadValidationError,
    QueueName,
    QueueService,
    SensitiveDataError,
    ServiceClosedError,
    UnknownQueueError,
    UnrecoverableError,
    WorkerError,
)
from queuekit.demo.services import BankingService
from tests.support.waiting import eventually

BANK = QueueName.BANK_SYNC
SYNC = BankSyncJobData(user_id="u1", account_id="a1", sync_type="incremental")
FAST_RETRY = {"backoff": {"type": "fixed", "delay": 10}}


async def test_injected_service_job_is_processed_and_read_back(service: QueueService) -> None:
    banking = BankingService(service)
    seen: list[BankSyncJobData] = []

    async def process(job: JobContext[BankSyncJobData]) -> JobResult:
        seen.append(job.data)
        await job.update_progress(40)
        await job.log("fetched page 1")
        await job.update_progress(100)
        return JobResult(success=True, message="synced", data={"transactions": 3})

    job = await banking.sync_bank_account("u1", "acc-1")
    assert job.state == JobState.WAITING
    service.create_worker(BANK, process)
    info = await service.wait_for_job(BANK, job.id, timeout=10)

    assert info.state == JobState.COMPLETED
    assert info.return_value == JobResult(success=True, message="synced",
                                          data={"transactions": 3})
    assert info.progress == 100
    assert info.attempts_made == 1
    assert info.data == BankSyncJobData(user_id="u1", account_id="acc-1",
                                        sync_type="incremental")
    assert seen == [info.data]
    assert info.created_at is not None and info.processed_at is not None
    assert info.finished_at is not None
    assert info.created_at <= info.processed_at <= info.finished_at
    fetched = await service.get_job(BANK, job.id)
    assert fetched == info


async def test_failing_job_is_retried_then_completes(service: QueueService) -> None:
    attempts: list[int] = []

    async def process(job: JobContext[BankSyncJobData]) -> JobResult:
        attempts.append(job.attempts_made)
        if job.attempts_made < 2:
            raise RuntimeError(f"bank timeout #{job.attempts_made}")
        return JobResult(success=True)

    job = await service.add_job(BANK, "sync", SYNC, {"attempts": 3, **FAST_RETRY})
    service.create_worker(BANK, process)
    info = await service.wait_for_job(BANK, job.id, timeout=10)
    assert info.state == JobState.COMPLETED
    assert attempts == [0, 1, 2]
    assert info.attempts_made == 3
    assert info.max_attempts == 3


async def test_job_fails_after_its_last_attempt(service: QueueService) -> None:
    async def process(job: JobContext[BankSyncJobData]) -> JobResult:
        raise RuntimeError("bank is down")

    job = await service.add_job(BANK, "sync", SYNC, {"attempts": 2, **FAST_RETRY})
    service.create_worker(BANK, process)
    info = await service.wait_for_job(BANK, job.id, timeout=10)
    assert info.state == JobState.FAILED
    assert info.attempts_made == 2
    assert info.failed_reason == "bank is down"
    counts = await service.get_job_counts(BANK)
    assert counts["failed"] == 1 and counts["completed"] == 0


async def test_unrecoverable_error_fails_without_more_attempts(service: QueueService) -> None:
    calls = 0

    async def process(job: JobContext[BankSyncJobData]) -> JobResult:
        nonlocal calls
        calls += 1
        raise UnrecoverableError("account closed")

    job = await service.add_job(BANK, "sync", SYNC, {"attempts": 5, **FAST_RETRY})
    service.create_worker(BANK, process)
    info = await service.wait_for_job(BANK, job.id, timeout=10)
    assert info.state == JobState.FAILED
    assert calls == 1
    assert info.failed_reason == "account closed"


async def test_exponential_backoff_shows_in_timestamps(service: QueueService) -> None:
    starts: list[dt.datetime] = []

    async def process(job: JobContext[BankSyncJobData]) -> JobResult:
        info = await service.get_job(BANK, job.id)
        assert info is not None and info.processed_at is not None
        starts.append(info.processed_at)
        if job.attempts_made < 2:
            raise RuntimeError("try again")
        return JobResult(success=True)

    options = JobOptions(attempts=3, backoff={"type": "exponential", "delay": 100})
    job = await service.add_job(BANK, "sync", SYNC, options)
    service.create_worker(BANK, process)
    info = await service.wait_for_job(BANK, job.id, timeout=10)
    assert info.state == JobState.COMPLETED
    gaps = [(b - a).total_seconds() for a, b in itertools.pairwise(starts)]
    # 100 ms then 200 ms; the lower bound is exact, the upper allows a loaded 2-core box.
    assert 0.1 <= gaps[0] < 0.35, gaps
    assert 0.2 <= gaps[1] < 0.45, gaps


async def test_delayed_job_waits_for_its_delay(service: QueueService) -> None:
    async def process(job: JobContext[BankSyncJobData]) -> JobResult:
        return JobResult(success=True)

    service.create_worker(BANK, process)
    job = await service.add_job(BANK, "sync", SYNC, {"delay": 300})
    assert job.state == JobState.DELAYED
    assert (await service.get_job_counts(BANK))["delayed"] == 1
    info = await service.wait_for_job(BANK, job.id, timeout=10)
    assert info.state == JobState.COMPLETED
    assert info.processed_at is not None and info.created_at is not None
    waited = (info.processed_at - info.created_at).total_seconds()
    assert 0.3 <= waited < 0.6, waited  # due after 300 ms; 300 ms slack for a busy host
    assert info.delay == 300


async def test_priorities_order_processing(service: QueueService) -> None:
    order: list[str] = []

    async def process(job: JobContext[BankSyncJobData]) -> JobResult:
        order.append(job.data.account_id)
        return JobResult(success=True)

    for account, priority in (("p3", 3), ("none", 0), ("p1", 1), ("p2", 2)):
        await service.add_job(BANK, "sync", {**SYNC.to_wire(), "accountId": account},
                              {"priority": priority})
    counts = await service.get_job_counts(BANK)
    assert counts["prioritized"] == 3 and counts["waiting"] == 1
    service.create_worker(BANK, process, concurrency=1)
    await eventually(lambda: service.get_job_counts(BANK), lambda c: c["completed"] == 4)
    assert order == ["none", "p1", "p2", "p3"]


async def test_custom_job_id_is_added_once(service: QueueService) -> None:
    first = await service.add_job(BANK, "sync", SYNC, {"job_id": "sync-u1-a1"})
    second = await service.add_job(BANK, "sync", SYNC, {"jobId": "sync-u1-a1"})
    assert first.id == second.id == "sync-u1-a1"
    assert (await service.get_job_counts(BANK))["waiting"] == 1


async def test_counts_have_every_state(service: QueueService) -> None:
    await service.add_job(BANK, "sync", SYNC)
    await service.add_job(BANK, "sync", SYNC, {"delay": 60_000})
    counts = await service.get_job_counts(BANK)
    assert counts == {"waiting": 1, "active": 0, "delayed": 1, "prioritized": 0,
                      "completed": 0, "failed": 0, "paused": 0, "waiting-children": 0}


async def test_progress_is_visible_while_the_job_runs(service: QueueService) -> None:
    release = asyncio.Event()

    async def process(job: JobContext[BankSyncJobData]) -> JobResult:
        await job.update_progress({"page": 2, "of": 5})
        await release.wait()
        return JobResult(success=True)

    job = await service.add_job(BANK, "sync", SYNC)
    service.create_worker(BANK, process)
    running = await eventually(lambda: service.get_job(BANK, job.id),
                               lambda i: i is not None and i.progress != 0)
    assert running is not None
    assert running.state == JobState.ACTIVE
    assert running.progress == {"page": 2, "of": 5}
    assert (await service.get_job_counts(BANK))["active"] == 1
    release.set()
    assert (await service.wait_for_job(BANK, job.id)).state == JobState.COMPLETED


async def test_bad_progress_fails_the_job_with_the_reason(service: QueueService) -> None:
    async def process(job: JobContext[BankSyncJobData]) -> JobResult:
        await job.update_progress(150)
        return JobResult(success=True)

    job = await service.add_job(BANK, "sync", SYNC, {"attempts": 1})
    service.create_worker(BANK, process)
    info = await service.wait_for_job(BANK, job.id)
    assert info.state == JobState.FAILED
    assert info.failed_reason is not None and "0..100" in info.failed_reason


async def test_processor_returning_a_wrong_type_fails_the_job(service: QueueService) -> None:
    async def process(job: JobContext[BankSyncJobData]) -> Any:
        return 42

    job = await service.add_job(BANK, "sync", SYNC, {"attempts": 1})
    service.create_worker(BANK, process)
    info = await service.wait_for_job(BANK, job.id)
    assert info.state == JobState.FAILED
    assert "JobResult" in (info.failed_reason or "")


async def test_plain_mapping_results_and_none_are_kept(service: QueueService) -> None:
    async def process(job: JobContext[BankSyncJobData]) -> Any:
        return None if job.data.account_id == "none" else {"rows": 2}

    a = await service.add_job(BANK, "sync", {**SYNC.to_wire(), "accountId": "none"})
    b = await service.add_job(BANK, "sync", SYNC)
    service.create_worker(BANK, process)
    assert (await service.wait_for_job(BANK, a.id)).return_value is None
    assert (await service.wait_for_job(BANK, b.id)).return_value == {"rows": 2}


async def test_invalid_payload_names_the_field_and_writes_nothing(
    service: QueueService,
) -> None:
    with pytest.raises(PayloadValidationError) as caught:
        await service.add_job(BANK, "sync", {"userId": "u1", "accountId": "a1",
                                             "syncType": "weekly", "extra": 1})
    assert "syncType" in caught.value.fields
    assert "extra" in caught.value.fields
    assert "syncType" in str(caught.value)
    assert (await service.get_job_counts(BANK))["waiting"] == 0


async def test_secret_looking_keys_are_refused(service: QueueService) -> None:
    payload = NotificationJobData(user_id="u1", type="email", template_id="t",
                                  data={"meta": {"Access-Token": "abc"}})
    with pytest.raises(SensitiveDataError) as caught:
        await service.add_job(QueueName.NOTIFICATIONS, "send", payload)
    assert caught.value.fields == ("data.meta.Access-Token",)
    assert (await service.get_job_counts(QueueName.NOTIFICATIONS))["waiting"] == 0


async def test_bad_options_and_names_are_refused(service: QueueService) -> None:
    with pytest.raises(PayloadValidationError) as caught:
        await service.add_job(BANK, "sync", SYNC, {"attempts": 0, "delay": -1})
    assert set(caught.value.fields) == {"attempts", "delay"}
    with pytest.raises(PayloadValidationError, match="name"):
        await service.add_job(BANK, "  ", SYNC)
    with pytest.raises(UnknownQueueError, match="no payload model"):
        await service.add_job("no-such-queue", "x", {"a": 1})
    assert (await service.get_job_counts(BANK))["waiting"] == 0


async def test_bulk_add_is_all_or_nothing(service: QueueService) -> None:
    good: list[Any] = [NewJob("sync", SYNC),
                       ("sync", {**SYNC.to_wire(), "accountId": "a2"}, {"delay": 0})]
    with pytest.raises(PayloadValidationError) as caught:
        await service.add_jobs(BANK, [*good, ("sync", {"userId": "u"})])
    assert "jobs[2].accountId" in caught.value.fields
    assert (await service.get_job_counts(BANK))["waiting"] == 0

    jobs = await service.add_jobs(BANK, good)
    assert len({j.id for j in jobs}) == 2
    assert (await service.get_job_counts(BANK))["waiting"] == 2
    assert await service.add_jobs(BANK, []) == []

    async def process(job: JobContext[BankSyncJobData]) -> JobResult:
        return JobResult(success=True, message=job.data.account_id)

    service.create_worker(BANK, process)
    infos = [await service.wait_for_job(BANK, j.id) for j in jobs]
    assert [i.return_value.message for i in infos] == ["a1", "a2"]


async def test_retention_keeps_the_last_completed_jobs(service: QueueService) -> None:
    async def process(job: JobContext[BankSyncJobData]) -> JobResult:
        return JobResult(success=True)

    jobs = [await service.add_job(BANK, "sync", SYNC,
                                  {"remove_on_complete": KeepJobs(count=2)}) for _ in range(5)]
    service.create_worker(BANK, process, concurrency=1)
    await eventually(lambda: service.get_job(BANK, jobs[-1].id),
                     lambda i: i is not None and i.state == JobState.COMPLETED)
    assert (await service.get_job_counts(BANK))["completed"] == 2
    assert await service.get_job(BANK, jobs[0].id) is None


async def test_missing_and_unfinished_jobs(service: QueueService) -> None:
    assert await service.get_job(BANK, "nope") is None
    with pytest.raises(JobNotFoundError):
        await service.wait_for_job(BANK, "nope", timeout=1)
    job = await service.add_job(BANK, "sync", SYNC)
    with pytest.raises(JobTimeoutError, match="still waiting"):
        await service.wait_for_job(BANK, job.id, timeout=0.05)


async def test_one_worker_per_queue(service: QueueService) -> None:
    async def process(job: JobContext[BankSyncJobData]) -> JobResult:
        return JobResult(success=True)

    async def other(job: JobContext[BankSyncJobData]) -> JobResult:
        return JobResult(success=False)

    worker = service.create_worker(BANK, process, concurrency=2)
    assert service.create_worker(BANK, process) is worker
    assert worker.concurrency == 2 and worker.running
    with pytest.raises(WorkerError, match="another processor"):
        service.create_worker(BANK, other)
    with pytest.raises(WorkerError, match="concurrency"):
        service.create_worker(QueueName.REPORTS, process, concurrency=0)
    assert service.workers == {BANK: worker}
    health = await service.health()
    assert health.ok and health.workers == {BANK: True}


async def test_close_waits_for_active_jobs_and_is_idempotent(service: QueueService) -> None:
    started = asyncio.Event()
    finished: list[str] = []

    async def process(job: JobContext[BankSyncJobData]) -> JobResult:
        started.set()
        await asyncio.sleep(0.2)  # real work in flight while close() is called
        finished.append(job.id)
        return JobResult(success=True)

    job = await service.add_job(BANK, "sync", SYNC)
    worker = service.create_worker(BANK, process)
    await started.wait()
    await asyncio.gather(service.close(), service.close())
    assert finished == [job.id]
    assert not worker.running
    assert service.closed
    health = await service.health()
    assert not health.ok and "service is closed" in health.reasons
    with pytest.raises(ServiceClosedError):
        await service.add_job(BANK, "sync", SYNC)
    await service.close()


async def test_close_forces_jobs_past_the_shutdown_timeout(
    service_factory: Callable[..., Awaitable[QueueService]],
) -> None:
    service = await service_factory(worker={"shutdown_timeout": 0.2})
    started = asyncio.Event()

    async def process(job: JobContext[BankSyncJobData]) -> JobResult:
        started.set()
        await asyncio.Event().wait()  # never finishes by itself
        return JobResult(success=True)  # pragma: no cover

    await service.add_job(BANK, "sync", SYNC)
    worker = service.create_worker(BANK, process)
    await started.wait()
    await asyncio.wait_for(service.close(), timeout=5)
    assert not worker.running
