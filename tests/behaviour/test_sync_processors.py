"""Plain-``def`` processors run off the event loop, on every backend.

The point is shown with the worker's own duties: a processor that spins the CPU for 3 s
with a 1 s lock keeps its lock (no stall, one attempt) while another queue keeps working.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from queuekit import (
    BankSyncJobData,
    JobContext,
    JobResult,
    JobState,
    QueueName,
    QueueService,
    ReportJobData,
    WorkerError,
)
from queuekit.events import EventType
from queuekit.processors import WorkerHost
from tests.support.waiting import eventually

BANK = QueueName.BANK_SYNC
REPORTS = QueueName.REPORTS


def report_data() -> dict[str, str]:
    return {"userId": "u1", "reportType": "monthly", "startDate": "2026-01-01",
            "endDate": "2026-01-31"}


def sync_data(n: int = 0) -> BankSyncJobData:
    return BankSyncJobData(user_id="u1", account_id=f"a{n}", sync_type="incremental")


async def test_a_plain_def_runs_in_a_thread_and_reports_progress(
    service: QueueService,
) -> None:
    loop_thread = threading.get_ident()
    threads: list[int] = []

    def build(job: JobContext[ReportJobData]) -> JobResult:
        threads.append(threading.get_ident())
        for step in (25, 50, 100):
            job.update_progress_sync(step)
        job.log_sync("built")
        return JobResult(success=True, data={"days": job.data.end_date.day})

    async with service.events(REPORTS) as events:
        job = await service.add_job(REPORTS, "generate-report", report_data())
        service.create_worker(REPORTS, build)
        progress = []
        async for event in events:
            if event.job_id == job.id and event.type == EventType.PROGRESS:
                progress.append(event.data)
            if event.job_id == job.id and event.type == EventType.COMPLETED:
                break
    info = await service.wait_for_job(REPORTS, job.id, timeout=10)
    assert info.state == JobState.COMPLETED
    assert info.return_value == JobResult(success=True, data={"days": 31})
    assert info.progress == 100
    assert progress == [25, 50, 100]
    assert threads and threads[0] != loop_thread


class _SyncHost(WorkerHost[ReportJobData]):
    queue = REPORTS

    def __init__(self) -> None:
        self.hooked: list[Any] = []
        self.completed: list[Any] = []

    def process(self, job: JobContext[ReportJobData]) -> JobResult:
        job.update_progress_sync({"stage": "done"})
        return JobResult(success=True, message=threading.current_thread().name)

    async def on_progress(self, job: JobContext[ReportJobData], progress: Any) -> None:
        self.hooked.append(progress)

    async def on_completed(self, job: JobContext[ReportJobData], result: Any) -> None:
        self.completed.append(result)


async def test_a_worker_host_with_a_plain_process_runs_off_the_loop_with_its_hooks(
    service: QueueService,
) -> None:
    host = _SyncHost()
    job = await service.add_job(REPORTS, "generate-report", report_data())
    service.create_worker(REPORTS, host)
    info = await service.wait_for_job(REPORTS, job.id, timeout=10)
    assert info.state == JobState.COMPLETED
    assert info.return_value.message.startswith(f"queuekit-{REPORTS}")  # the queue's pool
    assert host.hooked == [{"stage": "done"}]
    assert host.completed == [info.return_value]
    # The same host again is the same worker.
    assert service.create_worker(REPORTS, host) is service.workers[REPORTS]


async def test_the_same_plain_function_again_returns_the_running_worker(
    service: QueueService,
) -> None:
    def build(job: JobContext[ReportJobData]) -> JobResult:
        return JobResult(success=True)

    worker = service.create_worker(REPORTS, build)
    assert service.create_worker(REPORTS, build) is worker

    def other(job: JobContext[ReportJobData]) -> JobResult:
        return JobResult(success=True)

    with pytest.raises(WorkerError, match="another processor"):
        service.create_worker(REPORTS, other)


async def test_an_async_processor_cannot_use_the_blocking_methods(
    service: QueueService,
) -> None:
    async def process(job: JobContext[BankSyncJobData]) -> JobResult:
        job.update_progress_sync(50)
        return JobResult(success=True)

    job = await service.add_job(BANK, "sync", sync_data(), options={"attempts": 1})
    service.create_worker(BANK, process)
    info = await service.wait_for_job(BANK, job.id, timeout=10)
    assert info.state == JobState.FAILED
    assert "plain-def processors" in (info.failed_reason or "")


async def test_a_cpu_bound_plain_def_keeps_its_lock_while_another_queue_flows(
    service_factory: Callable[..., Awaitable[QueueService]],
) -> None:
    # A 1 s lock renewed every 0.5 s and a stalled check every 0.5 s: a processor that
    # held the event loop for 3 s would lose its lock and be run a second time.
    service = await service_factory(worker={"lock_duration": 1000, "stalled_interval": 500,
                                            "drain_delay": 0.5})
    runs: list[str] = []
    spun = threading.Event()

    def spin(job: JobContext[ReportJobData]) -> JobResult:
        runs.append(job.id)
        deadline = time.perf_counter() + 3.0
        spins = 0
        while time.perf_counter() < deadline:  # pure Python: holds the GIL between switches
            spins += 1
        spun.set()
        return JobResult(success=True, data={"spins": spins})

    async def quick(job: JobContext[BankSyncJobData]) -> JobResult:
        return JobResult(success=True)

    async with service.events(REPORTS) as events:
        report = await service.add_job(REPORTS, "generate-report", report_data())
        service.create_worker(REPORTS, spin)
        service.create_worker(BANK, quick, concurrency=2)
        await eventually(lambda: asyncio.sleep(0, runs), bool)  # the spin has started
        others = [await service.add_job(BANK, "sync", sync_data(n)) for n in range(20)]
        done = [await service.wait_for_job(BANK, job.id, timeout=10) for job in others]
        spinning_meanwhile = not spun.is_set()
        state_meanwhile = (await service.get_job(REPORTS, report.id)).state  # type: ignore[union-attr]
        info = await service.wait_for_job(REPORTS, report.id, timeout=20)
        seen = []
        async for event in events:
            if event.job_id == report.id:
                seen.append(event.type)
            if event.job_id == report.id and event.type == EventType.COMPLETED:
                break

    assert [d.state for d in done] == [JobState.COMPLETED] * 20
    # The other queue finished all 20 while the 3 s spin was still running.
    assert spinning_meanwhile
    assert state_meanwhile == JobState.ACTIVE
    assert info.state == JobState.COMPLETED
    assert info.attempts_made <= 1  # BullMQ counts the finished attempt; memory counts 0
    assert runs == [report.id]  # exactly once
    assert EventType.STALLED not in seen
