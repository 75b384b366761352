"""Job timeouts and cancellation (BullMQ Pro features) on every backend."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from typing import Any

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
)
from tests.support.waiting import eventually

BANK = QueueName.BANK_SYNC
SYNC = BankSyncJobData(user_id="u1", account_id="a1", sync_type="full")
FAST_RETRY = {"backoff": {"type": "fixed", "delay": 10}}


async def test_attempt_over_its_timeout_fails_at_the_timeout_and_is_retried(
        service: QueueService) -> None:
    interrupted: list[tuple[float, bool]] = []

    async def process(job: JobContext[BankSyncJobData]) -> JobResult:
        started = time.monotonic()
        if job.attempts_made == 0:
            try:
                await asyncio.sleep(2)  # a 2 s job
            except asyncio.CancelledError:
                interrupted.append((time.monotonic() - started, job.cancelled))
                raise
        return JobResult(success=True, data=job.attempts_made)

    job = await service.add_job(BANK, "sync", SYNC,
                                JobOptions(timeout=500, attempts=2, **FAST_RETRY))
    service.create_worker(BANK, process)
    info = await service.wait_for_job(BANK, job.id, timeout=10)

    assert info.state == JobState.COMPLETED and info.attempts_made == 2
    assert info.return_value == JobResult(success=True, data=1)
    (elapsed, cancelled), = interrupted
    # The timer is the event loop's (never early, to ~1 ms); the upper bound leaves
    # 250 ms for a loaded 2-core host between the timer and the processor's wake-up.
    assert 0.49 <= elapsed < 0.75, elapsed
    assert cancelled


async def test_timeout_on_every_attempt_fails_the_job_saying_so(service: QueueService) -> None:
    async def process(job: JobContext[BankSyncJobData]) -> JobResult:
        await asyncio.sleep(5)
        return JobResult(success=True)

    job = await service.add_job(BANK, "sync", SYNC,
                                {"timeout": 100, "attempts": 2, **FAST_RETRY})
    service.create_worker(BANK, process)
    info = await service.wait_for_job(BANK, job.id, timeout=10)
    assert info.state == JobState.FAILED
    assert info.attempts_made == 2
    assert info.failed_reason == "job timed out after 100 ms"


async def test_processor_that_swallows_the_timeout_still_fails(service: QueueService) -> None:
    async def process(job: JobContext[BankSyncJobData]) -> JobResult:
        # It ignores the interruption: the attempt fails anyway, the result is discarded.
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(5)
        return JobResult(success=True)

    job = await service.add_job(BANK, "sync", SYNC, {"timeout": 100, "attempts": 1})
    service.create_worker(BANK, process)
    info = await service.wait_for_job(BANK, job.id, timeout=10)
    assert info.state == JobState.FAILED
    assert info.failed_reason == "job timed out after 100 ms"


async def test_cancel_of_a_running_job_fails_it_without_retry(service: QueueService) -> None:
    started = asyncio.Event()
    runs: list[str] = []

    async def process(job: JobContext[BankSyncJobData]) -> JobResult:
        runs.append(job.id)
        started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            runs.append("saw-cancel")
            raise
        return JobResult(success=True)

    job = await service.add_job(BANK, "sync", SYNC, {"attempts": 3, **FAST_RETRY})
    service.create_worker(BANK, process)
    await asyncio.wait_for(started.wait(), 10)
    await eventually(lambda: service.get_job(BANK, job.id),
                     lambda i: i is not None and i.state == JobState.ACTIVE)
    assert await service.cancel_job(BANK, job.id) is True
    info = await service.wait_for_job(BANK, job.id, timeout=5)
    assert info.state == JobState.FAILED
    assert info.failed_reason == "cancelled"
    assert info.attempts_made == 1
    assert runs == [job.id, "saw-cancel"]


async def test_cancel_reaches_a_processor_that_polls_cancelled(service: QueueService) -> None:
    polled: list[bool] = []

    async def process(job: JobContext[BankSyncJobData]) -> JobResult:
        while True:
            with contextlib.suppress(asyncio.CancelledError):  # it only polls the flag
                await asyncio.sleep(0.01)
            if job.cancelled:
                polled.append(True)
                return JobResult(success=True, message="stopped early")

    job = await service.add_job(BANK, "sync", SYNC, {"attempts": 2})
    service.create_worker(BANK, process)
    await eventually(lambda: service.get_job(BANK, job.id),
                     lambda i: i is not None and i.state == JobState.ACTIVE)
    assert await service.cancel_job(BANK, job.id)
    info = await service.wait_for_job(BANK, job.id, timeout=5)
    assert (info.state, info.failed_reason, info.attempts_made) == (JobState.FAILED,
                                                                    "cancelled", 1)
    assert polled == [True]


@pytest.mark.parametrize("options", [{}, {"delay": 60_000}, {"priority": 3}])
async def test_cancel_of_a_waiting_job_removes_it(service: QueueService,
                                                  options: dict[str, Any]) -> None:
    job = await service.add_job(BANK, "sync", SYNC, options)
    other = await service.add_job(BANK, "sync", SYNC, options)
    assert await service.cancel_job(BANK, job.id) is True
    assert await service.get_job(BANK, job.id) is None
    assert await service.get_job(BANK, other.id) is not None
    assert await service.cancel_job(BANK, job.id) is False  # gone already


async def test_cancel_of_a_finished_or_unknown_job_does_nothing(service: QueueService) -> None:
    async def process(job: JobContext[BankSyncJobData]) -> JobResult:
        return JobResult(success=True)

    job = await service.add_job(BANK, "sync", SYNC)
    service.create_worker(BANK, process)
    await service.wait_for_job(BANK, job.id, timeout=10)
    assert await service.cancel_job(BANK, job.id) is False
    assert (await service.get_job(BANK, job.id)).state == JobState.COMPLETED  # type: ignore[union-attr]
    assert await service.cancel_job(BANK, "no-such-job") is False


@pytest.mark.parametrize("timeout", [0, -5, "soon"])
async def test_bad_timeout_is_refused_naming_the_field(service: QueueService,
                                                       timeout: object) -> None:
    with pytest.raises(PayloadValidationError) as caught:
        await service.add_job(BANK, "sync", SYNC, {"timeout": timeout})
    assert caught.value.fields == ("timeout",)
    assert (await service.get_job_counts(BANK))["waiting"] == 0


async def test_processor_that_blocks_the_loop_past_its_timeout_fails(
        service: QueueService) -> None:
    async def process(job: JobContext[BankSyncJobData]) -> JobResult:
        time.sleep(0.3)  # noqa: ASYNC251 - blocks the loop on purpose: no timer can fire
        return JobResult(success=True)

    job = await service.add_job(BANK, "sync", SYNC, {"timeout": 100, "attempts": 1})
    service.create_worker(BANK, process)
    info = await service.wait_for_job(BANK, job.id, timeout=10)
    assert (info.state, info.failed_reason) == (JobState.FAILED, "job timed out after 100 ms")


async def test_cancel_of_a_processor_waiting_on_a_thread_fails_it_at_once(
        service: QueueService) -> None:
    release = threading.Event()

    async def process(job: JobContext[BankSyncJobData]) -> JobResult:
        await asyncio.to_thread(release.wait, 10)  # the thread cannot be interrupted
        return JobResult(success=True)

    job = await service.add_job(BANK, "sync", SYNC, {"attempts": 3})
    service.create_worker(BANK, process)
    try:
        await eventually(lambda: service.get_job(BANK, job.id),
                         lambda i: i is not None and i.state == JobState.ACTIVE)
        assert await service.cancel_job(BANK, job.id)
        info = await service.wait_for_job(BANK, job.id, timeout=5)
        assert (info.state, info.failed_reason) == (JobState.FAILED, "cancelled")
        assert not release.is_set()  # failed while its thread still runs
    finally:
        release.set()


async def test_processor_that_cancels_its_own_job_fails_it(service: QueueService) -> None:
    async def process(job: JobContext[BankSyncJobData]) -> JobResult:
        await service.cancel_job(BANK, job.id)
        await asyncio.sleep(0.05)  # on Redis the request comes back through pub/sub
        return JobResult(success=True)

    job = await service.add_job(BANK, "sync", SYNC, {"attempts": 3})
    service.create_worker(BANK, process)
    info = await service.wait_for_job(BANK, job.id, timeout=10)
    assert (info.state, info.failed_reason, info.attempts_made) == (JobState.FAILED,
                                                                    "cancelled", 1)
