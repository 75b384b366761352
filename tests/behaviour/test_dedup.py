"""Deduplication (BullMQ's ``deduplication`` option) on every backend: simple, throttle,
debounce, with the ``deduplicated`` events; bad options write nothing."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from queuekit import (
    BankSyncJobData,
    Deduplication,
    JobContext,
    JobOptions,
    JobResult,
    JobState,
    PayloadValidationError,
    QueueName,
    QueueService,
)
from queuekit.events import EventType, QueueEvent
from queuekit.testing import InMemoryQueueService

BANK = QueueName.BANK_SYNC


def sync(account: str = "a1") -> BankSyncJobData:
    return BankSyncJobData(user_id="u1", account_id=account, sync_type="full")


def dedup(**fields: Any) -> JobOptions:
    return JobOptions(deduplication=Deduplication(id="sync-a1", **fields))


async def advance(service: QueueService, ms: int) -> None:
    """Let ``ms`` pass: the virtual clock in memory, the wall clock on Redis."""
    if isinstance(service, InMemoryQueueService):
        service.clock.advance(ms)
    else:
        await asyncio.sleep(ms / 1000)


async def dedup_events(events: Any, count: int) -> list[QueueEvent]:
    seen: list[QueueEvent] = []
    async with asyncio.timeout(10):
        async for event in events:
            if event.type == EventType.DEDUPLICATED:
                seen.append(event)
                if len(seen) == count:
                    return seen
    raise AssertionError(f"stream ended after {seen}")  # pragma: no cover


async def test_simple_mode_keeps_one_job_until_it_finishes(service: QueueService) -> None:
    async with service.events(BANK) as events:
        first = await service.add_job(BANK, "sync", sync(), options=dedup())
        second = await service.add_job(BANK, "sync", sync("other"), options=dedup())
        (event,) = await dedup_events(events, 1)
    assert second.id == first.id
    assert second.state == JobState.WAITING
    assert second.data.account_id == "a1"  # the existing job, not the dropped payload
    assert event.job_id == first.id
    assert event.data["deduplication_id"] == "sync-a1"
    assert event.data["deduplicated_job_id"] not in (None, first.id)
    assert await service.get_deduplication_job_id(BANK, "sync-a1") == first.id
    assert (await service.get_job_counts(BANK))["waiting"] == 1

    async def process(job: JobContext[BankSyncJobData]) -> JobResult:
        return JobResult(success=True)

    service.create_worker(BANK, process)
    await service.wait_for_job(BANK, first.id, timeout=10)
    # Finished: the key is gone, so the next add is a new job.
    assert await service.get_deduplication_job_id(BANK, "sync-a1") is None
    third = await service.add_job(BANK, "sync", sync(), options=dedup())
    assert third.id != first.id


async def test_throttle_mode_drops_duplicates_for_the_ttl(service: QueueService) -> None:
    async with service.events(BANK) as events:
        first = await service.add_job(BANK, "sync", sync(), options=dedup(ttl=400))
        again = await service.add_job(BANK, "sync", sync(), options=dedup(ttl=400))
        (event,) = await dedup_events(events, 1)
    assert again.id == first.id
    assert event.job_id == first.id and event.data["deduplication_id"] == "sync-a1"
    await advance(service, 600)  # past the ttl (400 ms; 200 ms of margin for a busy box)
    later = await service.add_job(BANK, "sync", sync(), options=dedup(ttl=400))
    assert later.id != first.id
    assert (await service.get_job_counts(BANK))["waiting"] == 2


async def test_extend_restarts_the_window_on_each_duplicate(service: QueueService) -> None:
    # Margins of 400 ms around a 1 s window: a busy machine (the cluster suite's servers
    # starting beside it) has delayed an add by more than 200 ms.
    options = dedup(ttl=1000, extend=True)
    first = await service.add_job(BANK, "sync", sync(), options=options)
    await advance(service, 600)
    assert (await service.add_job(BANK, "sync", sync(), options=options)).id == first.id
    await advance(service, 600)  # 1.2 s after the first add, 600 ms after the extension
    assert (await service.add_job(BANK, "sync", sync(), options=options)).id == first.id
    await advance(service, 1400)  # past the last extension (1 s, 400 ms margin)
    assert (await service.add_job(BANK, "sync", sync(), options=options)).id != first.id


async def test_debounce_mode_keeps_the_last_payload(service: QueueService) -> None:
    options = JobOptions(delay=5000, deduplication=Deduplication(
        id="sync-a1", ttl=5000, extend=True, replace=True))
    async with service.events(BANK) as events:
        first = await service.add_job(BANK, "sync", sync("v1"), options=options)
        second = await service.add_job(BANK, "sync", sync("v2"), options=options)
        third = await service.add_job(BANK, "sync", sync("v3"), options=options)
        seen = await dedup_events(events, 2)
    assert len({first.id, second.id, third.id}) == 3
    assert third.state == JobState.DELAYED
    assert await service.get_job(BANK, first.id) is None
    assert await service.get_job(BANK, second.id) is None
    kept = await service.get_job(BANK, third.id)
    assert kept is not None and kept.data.account_id == "v3"
    assert [(e.job_id, e.data["deduplicated_job_id"]) for e in seen] == [
        (second.id, first.id), (third.id, second.id)]
    assert (await service.get_job_counts(BANK))["delayed"] == 1
    assert await service.get_deduplication_job_id(BANK, "sync-a1") == third.id


async def test_replace_keeps_a_job_that_is_no_longer_delayed(service: QueueService) -> None:
    options = JobOptions(deduplication=Deduplication(id="sync-a1", replace=True))
    first = await service.add_job(BANK, "sync", sync("v1"), options=options)
    second = await service.add_job(BANK, "sync", sync("v2"), options=options)
    assert second.id == first.id
    assert second.data.account_id == "v1"


async def test_bulk_add_deduplicates_within_the_batch(service: QueueService) -> None:
    jobs = await service.add_jobs(BANK, [("sync", sync(), dedup()), ("sync", sync(), dedup()),
                                         ("sync", sync("b"))])
    assert jobs[0].id == jobs[1].id
    assert jobs[2].id != jobs[0].id
    assert (await service.get_job_counts(BANK))["waiting"] == 2


async def test_the_plain_jobs_of_a_deduplicating_bulk_return_what_is_stored(
        service: QueueService) -> None:
    jobs = await service.add_jobs(BANK, [("sync", sync(), dedup())] + [
        ("sync", sync(f"a{i}")) for i in range(2, 7)])
    for job in jobs[1:]:  # created_at is the timestamp the job was written with
        assert await service.get_job(BANK, job.id) == job


@pytest.mark.parametrize(("fields", "field"), [
    ({"id": ""}, "deduplication.id"),
    ({"id": "   "}, "deduplication.id"),
    ({"id": "x", "ttl": 0}, "deduplication.ttl"),
    ({"id": "x", "ttl": -5}, "deduplication.ttl"),
])
async def test_bad_deduplication_options_name_the_field_and_write_nothing(
    service: QueueService, fields: dict[str, Any], field: str, request: pytest.FixtureRequest,
) -> None:
    before = await _key_count(service, request)
    with pytest.raises(PayloadValidationError) as caught:
        await service.add_job(BANK, "sync", sync(), options={"deduplication": fields})
    assert field in caught.value.fields
    assert (await service.get_job_counts(BANK))["waiting"] == 0
    assert await _key_count(service, request) == before


async def _key_count(service: QueueService, request: pytest.FixtureRequest) -> int:
    if isinstance(service, InMemoryQueueService):
        return sum(len(q.jobs) + len(q.dedup) for q in service._queues.values())
    prefix = request.getfixturevalue("key_prefix")
    client = service.connection.client  # type: ignore[attr-defined]
    return len([key async for key in client.scan_iter(match=f"{prefix}:*")])
