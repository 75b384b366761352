"""Graceful shutdown with a deadline: SIGTERM lets active jobs finish, the deadline forces
the rest, and a forced job is re-run by another worker once its lock expires."""

from __future__ import annotations

import asyncio
import signal
import time
from collections import Counter
from typing import Any

import pytest

from queuekit import JobContext, JobResult, JobState, QueueName
from queuekit.testing import InMemoryQueueService
from tests.conftest import SettingsFactory
from tests.faults.conftest import (
    KEEP_ALL,
    ServiceFactory,
    SpawnWorker,
    runs,
    worker_options,
)
from tests.faults.worker_proc import FAULTS, FaultJobData
from tests.support.waiting import eventually


async def test_sigterm_finishes_active_jobs_and_another_worker_does_the_rest(
    make_settings: SettingsFactory, faults_service: ServiceFactory,
    spawn_worker: SpawnWorker, engine: str,
) -> None:
    settings = make_settings(worker=worker_options(engine, shutdown_timeout=5.0), jobs=KEEP_ALL)
    qs = await faults_service(settings)
    added = await qs.add_jobs(FAULTS, [("sleep", FaultJobData(label=f"j{i}", seconds=2.0))
                                       for i in range(20)])
    first = spawn_worker(settings, concurrency=10)
    await eventually(lambda: qs.get_job_counts(FAULTS), lambda c: c["active"] == 10,
                     timeout=20)

    signalled = time.monotonic()
    first.signal(signal.SIGTERM)
    code = await first.wait(timeout=settings.worker.shutdown_timeout + 10)
    took = time.monotonic() - signalled

    assert code == 0, first.log_tail()
    # The 10 active jobs had at most 2 s left; the process must be gone well within the
    # 5 s deadline (the rest is closing connections and interpreter exit).
    assert took < settings.worker.shutdown_timeout, took
    counts = await qs.get_job_counts(FAULTS)
    # It finished what it had started, took nothing new after the signal, lost nothing.
    assert (counts["completed"], counts["waiting"], counts["active"], counts["failed"]) == \
        (10, 10, 0, 0), counts

    second = spawn_worker(settings, concurrency=10)
    await eventually(lambda: qs.get_job_counts(FAULTS), lambda c: c["completed"] == 20,
                     timeout=20)
    by_pid: Counter[int] = Counter()
    for job in added:
        info = await qs.get_job(FAULTS, job.id)
        assert info is not None
        assert info.state == JobState.COMPLETED
        assert await runs(qs, job.id) == 1, f"job {job.id} ran more than once"
        by_pid[info.return_value.data["pid"]] += 1
    assert by_pid == {first.pid: 10, second.pid: 10}


async def test_jobs_past_the_deadline_are_forced_and_rerun_by_another_worker(
    make_settings: SettingsFactory, faults_service: ServiceFactory,
    spawn_worker: SpawnWorker, engine: str, request: pytest.FixtureRequest,
) -> None:
    settings = make_settings(
        worker=worker_options(engine, shutdown_timeout=1.0, lock_duration=2000,
                              stalled_interval=1000),
        jobs=KEEP_ALL,
    )
    qs = await faults_service(settings)
    added = await qs.add_jobs(FAULTS, [("sleep", FaultJobData(label=f"j{i}", seconds=3.0))
                                       for i in range(3)])
    first = spawn_worker(settings, concurrency=3)

    async def runs_of_all() -> list[int]:
        return [await runs(qs, job.id) for job in added]

    await eventually(runs_of_all, lambda r: r == [1, 1, 1], timeout=20)
    signalled = time.monotonic()
    first.signal(signal.SIGTERM)
    code = await first.wait(timeout=15)
    took = time.monotonic() - signalled

    assert code == 0, first.log_tail()
    # Forced after the 1 s deadline, not after the 3 s jobs: allow 1.5 s for closing the
    # connections and interpreter exit on a loaded 2-core machine.
    assert settings.worker.shutdown_timeout <= took < settings.worker.shutdown_timeout + 1.5, \
        took
    # Forced jobs are neither failed nor completed: they stay active, under a lock that
    # nobody renews any more.
    counts = await qs.get_job_counts(FAULTS)
    assert (counts["active"], counts["completed"], counts["failed"]) == (3, 0, 0), counts

    second = spawn_worker(settings, concurrency=3)
    await eventually(lambda: qs.get_job_counts(FAULTS), lambda c: c["completed"] == 3,
                     timeout=25)
    for job in added:
        info = await qs.get_job(FAULTS, job.id)
        assert info is not None
        assert info.state == JobState.COMPLETED
        assert info.return_value.data["pid"] == second.pid
        # At-least-once: a forced job ran twice, once cut short and once to completion.
        assert await runs(qs, job.id) == 2


async def test_in_memory_close_waits_for_the_deadline_then_puts_jobs_back() -> None:
    """The twin: every slot busy with a job that never ends must not block close()."""
    qs = InMemoryQueueService()
    started: Counter[str] = Counter()
    hang_first_run = asyncio.Event()  # never set

    async def process(job: JobContext[Any]) -> JobResult:
        started[job.id] += 1
        if started[job.id] == 1 and job.data.account_id != "quick":
            await hang_first_run.wait()
        return JobResult(success=True)

    try:
        jobs = [await qs.add_job(QueueName.BANK_SYNC, "sync",
                                 {"userId": "u", "accountId": a, "syncType": "full"})
                for a in ("slow-1", "slow-2", "quick")]
        worker = qs.create_worker(QueueName.BANK_SYNC, process, concurrency=2)
        await eventually(lambda: qs.get_job_counts(QueueName.BANK_SYNC),
                         lambda c: c["active"] == 2, timeout=5)
        began = time.monotonic()
        await asyncio.wait_for(worker.close(timeout=0.2), timeout=5)
        # Forced at the 0.2 s deadline; 0.3 s slack for a loaded machine.
        assert 0.2 <= time.monotonic() - began < 0.5
        counts = await qs.get_job_counts(QueueName.BANK_SYNC)
        assert (counts["waiting"], counts["active"], counts["completed"]) == (3, 0, 0)

        qs.create_worker(QueueName.BANK_SYNC, process, concurrency=2)
        for job in jobs:
            info = await qs.wait_for_job(QueueName.BANK_SYNC, job.id, timeout=5)
            assert info.state == JobState.COMPLETED
        assert started == {jobs[0].id: 2, jobs[1].id: 2, jobs[2].id: 1}
    finally:
        await qs.close()
