"""``wait_for_job`` is event-driven on every backend: a finished job wakes its waiters,
nothing polls while a job runs, and closing the service ends every wait."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from queuekit import (
    BankSyncJobData,
    JobContext,
    JobResult,
    JobState,
    QueueName,
    QueueService,
    ServiceClosedError,
    UnrecoverableError,
)
from tests.support.waiting import eventually

BANK = QueueName.BANK_SYNC
SYNC = BankSyncJobData(user_id="u1", account_id="a1", sync_type="incremental")


def count_reads(service: QueueService, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record every look at the job that ``wait_for_job`` makes: a ``get_job``, or the
    backend's state-only ``_job_state`` (which in memory reads through ``get_job``)."""
    reads: list[str] = []
    read, state = service.get_job, service._job_state
    nested = False

    async def counted(queue: str, job_id: str) -> Any:
        if not nested:
            reads.append(job_id)
        return await read(queue, job_id)

    async def counted_state(queue: str, job_id: str) -> Any:
        nonlocal nested
        reads.append(job_id)
        nested = True
        try:
            return await state(queue, job_id)
        finally:
            nested = False

    monkeypatch.setattr(service, "get_job", counted)
    monkeypatch.setattr(service, "_job_state", counted_state)
    return reads


async def held_worker(service: QueueService, *, fail: bool = False) -> asyncio.Event:
    """A worker whose jobs run until the returned event is set."""
    release = asyncio.Event()

    async def process(job: JobContext[BankSyncJobData]) -> JobResult:
        await release.wait()
        if fail:
            raise UnrecoverableError("asked to fail")
        return JobResult(success=True, data={"id": job.id})

    service.create_worker(BANK, process)
    return release


async def active(service: QueueService, job_id: str) -> None:
    await eventually(lambda: service.get_job(BANK, job_id),
                     lambda info: info is not None and info.state == JobState.ACTIVE)


async def test_a_finished_job_wakes_its_waiter_without_polling(
    service: QueueService, monkeypatch: pytest.MonkeyPatch,
) -> None:
    release = await held_worker(service)
    job = await service.add_job(BANK, "sync-transactions", SYNC)
    await active(service, job.id)
    reads = count_reads(service, monkeypatch)
    waiting = asyncio.ensure_future(service.wait_for_job(BANK, job.id, timeout=10))
    # One look at once, after subscribing (a job finishing in between still wakes it).
    await eventually(lambda: asyncio.sleep(0, len(reads)), lambda n: n >= 1)
    await asyncio.sleep(0.3)  # a job that runs a while: a poller would read again and again
    assert len(reads) == 1, reads
    released = time.monotonic()
    release.set()
    info = await waiting
    woke_after = time.monotonic() - released

    assert info.state == JobState.COMPLETED
    assert info.return_value == JobResult(success=True, data={"id": job.id})
    # At most one more read, after the wake-up: the finished job (Redis reads it in the
    # event's own round trip, behind the reader's XREAD: no read here at all). The
    # fallback re-read comes only after 1 s; the event arrives within milliseconds (0.5 s
    # leaves room for a loaded box).
    assert len(reads) <= 2, reads
    assert woke_after < 0.5, woke_after


async def test_a_failed_job_wakes_its_waiter(service: QueueService) -> None:
    release = await held_worker(service, fail=True)
    job = await service.add_job(BANK, "sync-transactions", SYNC)
    waiting = asyncio.ensure_future(service.wait_for_job(BANK, job.id, timeout=10))
    await active(service, job.id)
    released = time.monotonic()
    release.set()
    info = await waiting

    assert info.state == JobState.FAILED
    assert info.failed_reason == "asked to fail"
    assert time.monotonic() - released < 0.5  # event, not the 1 s fallback (see above)


async def test_many_waiters_of_one_queue_each_get_their_own_job(service: QueueService) -> None:
    release = await held_worker(service)
    jobs = await service.add_jobs(BANK, [("sync-transactions", SYNC) for _ in range(30)])
    waits = [asyncio.ensure_future(service.wait_for_job(BANK, job.id, timeout=20))
             for job in jobs]
    await asyncio.sleep(0)
    release.set()
    infos = await asyncio.gather(*waits)

    assert [info.id for info in infos] == [job.id for job in jobs]
    assert {info.state for info in infos} == {JobState.COMPLETED}
    assert [info.return_value.data for info in infos] == [{"id": job.id} for job in jobs]


async def test_closing_the_service_ends_a_wait_at_once(
    service: QueueService, monkeypatch: pytest.MonkeyPatch,
) -> None:
    job = await service.add_job(BANK, "sync-transactions", SYNC)  # no worker: it stays waiting
    reads = count_reads(service, monkeypatch)
    waiting = asyncio.ensure_future(service.wait_for_job(BANK, job.id, timeout=30))
    await eventually(lambda: asyncio.sleep(0, len(reads)), lambda n: n >= 1)  # subscribed
    closing = time.monotonic()
    await service.close()
    with pytest.raises(ServiceClosedError):
        await waiting
    assert time.monotonic() - closing < 0.9  # woken by the close, not the 1 s re-read
