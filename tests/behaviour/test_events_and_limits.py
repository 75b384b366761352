"""Events and per-user rate limits, on both backends."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest

from queuekit import (
    BankSyncJobData,
    JobContext,
    JobResult,
    QueueName,
    QueueService,
    RateLimitExceededError,
)
from queuekit.events import EventType, QueueEvent

BANK = QueueName.BANK_SYNC


def sync(user: str = "u1") -> BankSyncJobData:
    return BankSyncJobData(user_id=user, account_id="a1", sync_type="full")


async def collect_until(events: object, job_id: str, last: EventType) -> list[QueueEvent]:
    """Events of ``job_id`` up to and including the first ``last`` event."""
    seen: list[QueueEvent] = []
    async for event in events:  # type: ignore[attr-defined]
        if event.job_id != job_id:
            continue
        seen.append(event)
        if event.type == last:
            return seen
    raise AssertionError(f"stream ended before {last}: {seen}")  # pragma: no cover


async def test_subscriber_sees_progress_in_order_then_completed(service: QueueService) -> None:
    async def process(job: JobContext[BankSyncJobData]) -> JobResult:
        for step in (0, 25, 50, 75, 100):
            await job.update_progress(step)
        return JobResult(success=True, message="done")

    async with service.events(BANK) as events:
        job = await service.add_job(BANK, "sync", sync())
        service.create_worker(BANK, process)
        seen = await collect_until(events, job.id, EventType.COMPLETED)
    types = [e.type for e in seen]
    assert types[0] == EventType.WAITING
    assert types.index(EventType.ACTIVE) < types.index(EventType.PROGRESS)
    assert [e.data for e in seen if e.type == EventType.PROGRESS] == [0, 25, 50, 75, 100]
    assert seen[-1].data == JobResult(success=True, message="done")
    assert all(e.queue == BANK for e in seen)


async def test_failed_attempts_carry_their_number_and_retrying_follows(
    service: QueueService,
) -> None:
    async def process(job: JobContext[BankSyncJobData]) -> JobResult:
        await job.update_progress({"attempt": job.attempts_made + 1})
        if job.attempts_made < 2:
            raise RuntimeError(f"bank timeout {job.attempts_made + 1}")
        return JobResult(success=True)

    async with service.events(BANK) as events:
        job = await service.add_job(BANK, "sync", sync(),
                                    {"attempts": 3, "backoff": {"type": "exponential",
                                                                "delay": 50}})
        service.create_worker(BANK, process)
        seen = await collect_until(events, job.id, EventType.COMPLETED)
    failed = [e for e in seen if e.type == EventType.FAILED]
    retrying = [e for e in seen if e.type == EventType.RETRYING]
    assert [(e.attempt, e.will_retry, e.data) for e in failed] == [
        (1, True, "bank timeout 1"), (2, True, "bank timeout 2")]
    assert [e.attempt for e in retrying] == [2, 3]
    assert [e.data for e in seen if e.type == EventType.PROGRESS] == [
        {"attempt": 1}, {"attempt": 2}, {"attempt": 3}]


async def test_final_failure_event(service: QueueService) -> None:
    async def process(job: JobContext[BankSyncJobData]) -> JobResult:
        raise RuntimeError("gone")

    async with service.events(BANK) as events:
        job = await service.add_job(BANK, "sync", sync(), {"attempts": 1, "delay": 20})
        service.create_worker(BANK, process)
        seen = await collect_until(events, job.id, EventType.FAILED)
    assert seen[0].type == EventType.DELAYED
    assert seen[-1].attempt == 1
    assert seen[-1].will_retry is False
    assert seen[-1].data == "gone"


async def test_closed_stream_ends_iteration(service: QueueService) -> None:
    stream = service.events(BANK)
    await stream.open()
    await stream.aclose()
    await stream.aclose()
    assert [e async for e in stream] == []


async def test_per_user_rate_limit(
    service_factory: Callable[..., Awaitable[QueueService]],
) -> None:
    service = await service_factory(
        security={"rate_limits": {"bank-sync": {"max": 3, "duration": 60_000}}})
    for _ in range(3):
        await service.add_job(BANK, "sync", sync("alice"))
    with pytest.raises(RateLimitExceededError) as caught:
        await service.add_job(BANK, "sync", sync("alice"))
    error = caught.value
    assert error.user_id == "alice"
    assert error.limit == 3
    assert 0 < error.retry_after <= 60
    assert "alice" in str(error)
    await service.add_job(BANK, "sync", sync("bob"))  # other users are not affected
    with pytest.raises(RateLimitExceededError):  # bulk: all or nothing
        await service.add_jobs(BANK, [("sync", sync("bob")), ("sync", sync("bob")),
                                      ("sync", sync("bob"))])
    await service.add_jobs(BANK, [("sync", sync("bob")), ("sync", sync("carol"))])
    counts = await service.get_job_counts(BANK)
    assert counts["waiting"] == 6
    # queues without a limit are not limited
    for _ in range(5):
        await service.add_job(QueueName.ANALYTICS, "e", {"userId": "alice", "event": "x"})


async def test_rate_limit_window_slides(
    service_factory: Callable[..., Awaitable[QueueService]],
) -> None:
    service = await service_factory(
        security={"rate_limits": {"bank-sync": {"max": 2, "duration": 200}}})
    await service.add_job(BANK, "sync", sync())
    await service.add_job(BANK, "sync", sync())
    with pytest.raises(RateLimitExceededError) as caught:
        await service.add_job(BANK, "sync", sync())
    assert caught.value.retry_after <= 0.2
    advance = getattr(service, "clock", None)
    if advance is not None:  # in memory: move the virtual clock past the window
        advance.advance(250)
    else:
        import asyncio

        await asyncio.sleep(caught.value.retry_after + 0.05)  # real Redis: wait it out
    await service.add_job(BANK, "sync", sync())
