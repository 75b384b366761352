"""Crash recovery: a worker killed with SIGKILL mid-job loses nothing, and a job that
keeps killing its worker fails after ``max_stalled_count`` with a reason that says so."""

from __future__ import annotations

import asyncio
import signal
import time

import pytest

from queuekit import JobState
from tests.conftest import SettingsFactory
from tests.faults.conftest import (
    KEEP_ALL,
    ServiceFactory,
    SpawnWorker,
    runs,
    worker_connections,
    worker_options,
)
from tests.faults.worker_proc import FAULTS, FaultJobData
from tests.support.waiting import eventually


async def test_job_of_a_killed_worker_is_completed_by_another_in_time(
    make_settings: SettingsFactory, faults_service: ServiceFactory,
    spawn_worker: SpawnWorker, engine: str,
) -> None:
    settings = make_settings(
        worker=worker_options(engine, lock_duration=2000, stalled_interval=1000),
        jobs=KEEP_ALL,
    )
    qs = await faults_service(settings)
    victim = spawn_worker(settings)
    # A minute on its first run (it is killed during it), 0.1 s on the next.
    job = await qs.add_job(FAULTS, "sleep",
                           FaultJobData(label="killed", seconds=0.1, first_run_seconds=60))
    await eventually(lambda: runs(qs, job.id), lambda n: n == 1, timeout=20)
    alone = await worker_connections(qs)
    rescuer = spawn_worker(settings)
    await eventually(lambda: worker_connections(qs), lambda n: n > alone, timeout=20)

    killed = time.monotonic()
    victim.signal(signal.SIGKILL)
    assert await victim.wait(timeout=5) == -signal.SIGKILL
    bound = (settings.worker.lock_duration + settings.worker.stalled_interval) / 1000 + 2
    info = await qs.wait_for_job(FAULTS, job.id, timeout=bound + 10)
    took = time.monotonic() - killed

    assert info.state == JobState.COMPLETED
    assert info.return_value.data["pid"] == rescuer.pid
    assert await runs(qs, job.id) == 2
    # The lock expires at most lock_duration after the kill; the rescuer's next stalled
    # check (every stalled_interval) moves the job back; 2 s cover pick-up and the run.
    assert took < bound, took


async def test_job_that_keeps_killing_its_worker_fails_after_max_stalled_count(
    make_settings: SettingsFactory, faults_service: ServiceFactory,
    spawn_worker: SpawnWorker, engine: str, request: pytest.FixtureRequest,
) -> None:
    settings = make_settings(
        worker=worker_options(engine, lock_duration=1000, stalled_interval=500,
                              max_stalled_count=1),
        jobs=KEEP_ALL,
    )
    qs = await faults_service(settings)
    job = await qs.add_job(FAULTS, "poison", FaultJobData(label="poison", crash=True),
                           {"attempts": 5})
    max_stalled = settings.worker.max_stalled_count
    exits: list[int] = []
    worker = spawn_worker(settings)
    deadline = time.monotonic() + 30
    # A supervisor's loop (systemd, Kubernetes): restart the worker whenever it dies.
    while (info := await qs.get_job(FAULTS, job.id)) is not None \
            and info.state != JobState.FAILED:
        assert time.monotonic() < deadline, f"job still {info.state}; exits {exits}"
        if worker.returncode is not None:
            exits.append(worker.returncode)
            assert len(exits) <= max_stalled + 1, f"job still {info.state} after {exits}"
            worker = spawn_worker(settings)
        await asyncio.sleep(0.05)

    assert info is not None
    # It crashed its worker max_stalled_count + 1 times; the worker after that failed it
    # without running it again, and lives on.
    assert exits == [-signal.SIGKILL] * (max_stalled + 1)
    assert await runs(qs, job.id) == max_stalled + 1
    assert worker.returncode is None
    reason = info.failed_reason or ""
    assert "stalled more than allowable limit" in reason, reason
    assert f"max_stalled_count is {max_stalled}" in reason, reason
    # The stall limit failed it, not its attempts (it had 5).
    assert info.attempts_made < info.max_attempts
