"""Queue controls on every backend: pause/resume, remove, clean, drain, obliterate,
global concurrency, the worker limiter and a processor's manual rate limit."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from queuekit import (
    BankSyncJobData,
    JobActiveError,
    JobContext,
    JobResult,
    JobState,
    PayloadValidationError,
    QueueName,
    QueueService,
)
from queuekit.testing import InMemoryQueueService
from tests.support.waiting import eventually

BANK = QueueName.BANK_SYNC


def sync(account: str = "a1") -> BankSyncJobData:
    return BankSyncJobData(user_id="u1", account_id=account, sync_type="full")


async def done(job: JobContext[BankSyncJobData]) -> JobResult:
    return JobResult(success=True)


async def key_count(service: QueueService, request: pytest.FixtureRequest) -> int:
    if isinstance(service, InMemoryQueueService):
        return sum(len(q.jobs) for q in service._queues.values())
    prefix = request.getfixturevalue("key_prefix")
    client = service.connection.client  # type: ignore[attr-defined]
    return len([key async for key in client.scan_iter(match=f"{prefix}:*")])


async def finished(service: QueueService, job_ids: list[str]) -> list[str]:
    return [job_id for job_id in job_ids
            if (info := await service.get_job(BANK, job_id)) is not None
            and info.state.finished]


def held_worker(service: QueueService) -> asyncio.Event:
    """A one-slot worker whose jobs run until the returned event is set."""
    release = asyncio.Event()

    async def slow(job: JobContext[BankSyncJobData]) -> JobResult:
        await release.wait()
        return JobResult(success=True)

    service.create_worker(BANK, slow, concurrency=1)
    return release


async def until_active(service: QueueService, job_id: str) -> None:
    await eventually(lambda: service.get_job(BANK, job_id),
                     lambda info: info is not None and info.state == JobState.ACTIVE)


async def test_pause_keeps_jobs_waiting_and_resume_runs_them(service: QueueService) -> None:
    assert not await service.is_paused(BANK)
    await service.pause(BANK)
    assert await service.is_paused(BANK)
    service.create_worker(BANK, done)
    job = await service.add_job(BANK, "sync", sync())
    # Paused: the worker must not take it (give it time to, were it broken).
    await asyncio.sleep(0.3)
    info = await service.get_job(BANK, job.id)
    assert info is not None and info.state == JobState.WAITING
    assert (await service.get_job_counts(BANK))["waiting"] == 1  # BullMQ 6: stays in wait
    await service.resume(BANK)
    assert not await service.is_paused(BANK)
    assert (await service.wait_for_job(BANK, job.id, timeout=10)).state == JobState.COMPLETED


async def test_pause_lets_the_running_job_finish(service: QueueService) -> None:
    release = held_worker(service)
    running = await service.add_job(BANK, "sync", sync())
    queued = await service.add_job(BANK, "sync", sync("b"))
    await until_active(service, running.id)
    await service.pause(BANK)
    release.set()
    assert (await service.wait_for_job(BANK, running.id, timeout=10)).state == JobState.COMPLETED
    await asyncio.sleep(0.3)
    info = await service.get_job(BANK, queued.id)
    assert info is not None and info.state == JobState.WAITING
    await service.resume(BANK)
    await service.wait_for_job(BANK, queued.id, timeout=10)


async def test_remove_job(service: QueueService) -> None:
    waiting = await service.add_job(BANK, "sync", sync(), options={"delay": 60_000})
    assert await service.remove_job(BANK, waiting.id) is True
    assert await service.get_job(BANK, waiting.id) is None
    assert await service.remove_job(BANK, waiting.id) is False
    assert await service.remove_job(BANK, "no-such-job") is False

    active = await service.add_job(BANK, "sync", sync())
    release = held_worker(service)
    await until_active(service, active.id)
    with pytest.raises(JobActiveError, match="active"):
        await service.remove_job(BANK, active.id)
    release.set()
    await service.wait_for_job(BANK, active.id, timeout=10)
    assert await service.remove_job(BANK, active.id) is True
    counts = await service.get_job_counts(BANK)
    assert counts["completed"] == 0 and counts["delayed"] == 0


async def test_clean_removes_old_finished_jobs_up_to_the_limit(service: QueueService) -> None:
    async def fail(job: JobContext[BankSyncJobData]) -> JobResult:
        raise RuntimeError("bank down")

    service.create_worker(BANK, fail)
    jobs = [await service.add_job(BANK, "sync", sync(str(i)), options={"attempts": 1})
            for i in range(5)]
    ids = [job.id for job in jobs]
    await eventually(lambda: finished(service, ids), lambda got: len(got) == 5)
    assert await service.clean(BANK, "failed", grace_ms=3_600_000) == []  # all too young
    removed = await service.clean(BANK, "failed", limit=2)
    assert len(removed) == 2 and set(removed) <= set(ids)
    assert (await service.get_job_counts(BANK))["failed"] == 3
    rest = await service.clean(BANK, "failed", limit=0)  # 0: no limit
    assert sorted(removed + rest) == sorted(ids)
    assert (await service.get_job_counts(BANK))["failed"] == 0
    assert await service.clean(BANK, "completed") == []


async def test_drain_removes_waiting_and_delayed_only(service: QueueService) -> None:
    active = await service.add_job(BANK, "sync", sync())
    release = held_worker(service)
    await until_active(service, active.id)
    await service.add_job(BANK, "sync", sync("w"))
    await service.add_job(BANK, "sync", sync("p"), options={"priority": 3})
    await service.add_job(BANK, "sync", sync("d"), options={"delay": 60_000})
    await service.drain(BANK)
    counts = await service.get_job_counts(BANK)
    assert (counts["waiting"], counts["prioritized"], counts["delayed"]) == (0, 0, 0)
    assert counts["active"] == 1
    release.set()
    assert (await service.wait_for_job(BANK, active.id, timeout=10)).state == JobState.COMPLETED


async def test_obliterate_refuses_active_jobs_unless_forced(
    service: QueueService, request: pytest.FixtureRequest,
) -> None:
    active = await service.add_job(BANK, "sync", sync())
    await service.add_job(BANK, "sync", sync("later"), options={"delay": 60_000})
    release = held_worker(service)
    await until_active(service, active.id)
    with pytest.raises(JobActiveError, match="force"):
        await service.obliterate(BANK)
    assert not await service.is_paused(BANK)  # the refusal left the queue as it was
    assert (await service.get_job_counts(BANK))["delayed"] == 1
    release.set()
    await service.wait_for_job(BANK, active.id, timeout=10)
    await service.obliterate(BANK)
    assert all(count == 0 for count in (await service.get_job_counts(BANK)).values())
    assert await key_count(service, request) == 0  # no key of the queue is left


async def test_obliterate_with_force_removes_active_jobs(service: QueueService) -> None:
    active = await service.add_job(BANK, "sync", sync())
    release = held_worker(service)
    await until_active(service, active.id)
    await service.obliterate(BANK, force=True)
    assert await service.get_job(BANK, active.id) is None
    release.set()  # its worker cannot record the outcome; nothing comes back
    await asyncio.sleep(0.1)
    assert await service.get_job(BANK, active.id) is None


async def test_global_concurrency_caps_active_jobs(service: QueueService) -> None:
    assert await service.get_global_concurrency(BANK) is None
    await service.set_global_concurrency(BANK, 2)
    assert await service.get_global_concurrency(BANK) == 2
    active = 0
    peak = 0

    async def tracked(job: JobContext[BankSyncJobData]) -> JobResult:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.05)
        active -= 1
        return JobResult(success=True)

    service.create_worker(BANK, tracked, concurrency=5)
    began = asyncio.get_running_loop().time()
    jobs = await service.add_jobs(BANK, [("sync", sync(str(i))) for i in range(6)])
    for job in jobs:
        await service.wait_for_job(BANK, job.id, timeout=20)
    assert peak == 2
    # 3 rounds of 50 ms; a freed slot is taken at once, not after drainDelay (5 s).
    assert asyncio.get_running_loop().time() - began < 3.0
    await service.set_global_concurrency(BANK, None)
    assert await service.get_global_concurrency(BANK) is None


async def test_manual_rate_limit_puts_the_job_back_without_using_an_attempt(
    service: QueueService,
) -> None:
    calls: list[int] = []
    starts: list[float] = []
    loop = asyncio.get_running_loop()
    memory = isinstance(service, InMemoryQueueService)

    async def throttled(job: JobContext[BankSyncJobData]) -> JobResult:
        calls.append(job.attempts_made)
        starts.append(service.clock.now_ms() / 1000 if memory  # type: ignore[attr-defined]
                      else loop.time())
        if len(calls) == 1:
            await job.rate_limit(300)
        return JobResult(success=True)

    service.create_worker(BANK, throttled)
    job = await service.add_job(BANK, "sync", sync(), options={"attempts": 1})
    info = await service.wait_for_job(BANK, job.id, timeout=15)
    assert info.state == JobState.COMPLETED  # not failed, although attempts=1
    assert calls == [0, 0]
    assert info.attempts_made == 1
    # The second start waited for the limit: 300 ms (less 20 ms: Redis's PTTL rounds),
    # and not drainDelay (5 s).
    assert 0.28 <= starts[1] - starts[0] < 3.0


async def test_worker_limiter_spaces_job_starts(service_factory: Any) -> None:
    service: QueueService = await service_factory(
        worker={"limiter": {str(BANK): {"max": 2, "duration": 500}}})
    starts: list[float] = []
    loop = asyncio.get_running_loop()
    memory = isinstance(service, InMemoryQueueService)

    async def record(job: JobContext[BankSyncJobData]) -> JobResult:
        starts.append(service.clock.now_ms() / 1000 if memory  # type: ignore[attr-defined]
                      else loop.time())
        return JobResult(success=True)

    service.create_worker(BANK, record, concurrency=5)
    jobs = await service.add_jobs(BANK, [("sync", sync(str(i))) for i in range(6)])
    for job in jobs:
        await service.wait_for_job(BANK, job.id, timeout=20)
    starts.sort()
    # 2 per 500 ms: the 3rd and 5th start a window later (50 ms tolerance for timers).
    assert starts[2] - starts[0] >= 0.45
    assert starts[4] - starts[2] >= 0.45
    # ... and not drainDelay (5 s) later: the worker waited the limiter's ttl.
    assert starts[5] - starts[0] < 3.0


@pytest.mark.parametrize(("call", "field"), [
    (lambda s: s.clean(BANK, "bogus"), "state"),
    (lambda s: s.clean(BANK, "failed", grace_ms=-1), "grace_ms"),
    (lambda s: s.clean(BANK, "failed", limit=-1), "limit"),
    (lambda s: s.set_global_concurrency(BANK, 0), "n"),
    (lambda s: s.remove_job(BANK, ""), "job_id"),
    (lambda s: s.get_deduplication_job_id(BANK, ""), "dedup_id"),
])
async def test_bad_control_input_names_the_field_and_writes_nothing(
    service: QueueService, request: pytest.FixtureRequest, call: Any, field: str,
) -> None:
    await service.add_job(BANK, "sync", sync())
    before = await key_count(service, request)
    with pytest.raises(PayloadValidationError) as caught:
        await call(service)
    assert caught.value.fields == (field,)
    assert await key_count(service, request) == before
    assert await service.get_global_concurrency(BANK) is None
