"""``cancel_job`` from this process stops a job running in another worker process
(Redis pub/sub), on both engines: failed, reason "cancelled", never run again."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from queuekit import JobState, QueuekitSettings, RedisQueueService
from tests.conftest import SettingsFactory
from tests.faults.conftest import WorkerProcess
from tests.faults.worker_proc import FAULTS, registry, runs_key
from tests.support.waiting import eventually


@pytest.fixture(params=["fast", "bullmq"])
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def settings(make_settings: SettingsFactory, engine: str) -> QueuekitSettings:
    return make_settings(worker={"engine": engine, "lock_duration": 5000})


@pytest.fixture
def worker(settings: QueuekitSettings, tmp_path: Path) -> Iterator[WorkerProcess]:
    process = WorkerProcess(settings, 2, tmp_path / "worker.log")
    yield process
    process.stop()  # by its pid


async def test_cancel_from_another_process_ends_the_running_job_within_a_second(
        settings: QueuekitSettings, worker: WorkerProcess) -> None:
    service = await RedisQueueService.connect(settings, registry())
    try:
        job = await service.add_job(FAULTS, "sleep", {"label": "long", "seconds": 30},
                                    {"attempts": 3, "backoff": 10})
        client = service.connection.client
        await eventually(lambda: client.get(runs_key(service.prefix, job.id)),
                         lambda runs: runs == "1", timeout=20)
        started = time.monotonic()
        assert await service.cancel_job(FAULTS, job.id) is True
        info = await service.wait_for_job(FAULTS, job.id, timeout=5)
        took = time.monotonic() - started
        assert info.state == JobState.FAILED, worker.log_tail()
        assert info.failed_reason == "cancelled"
        assert info.attempts_made == 1
        # Pub/sub delivery and one moveToFinished: well under the 1 s the issue allows,
        # which leaves room for a loaded 2-core host.
        assert took < 1.0, took
        await asyncio.sleep(0.3)  # a (wrong) retry would have a 10 ms backoff
        assert await client.get(runs_key(service.prefix, job.id)) == "1"
        assert (await service.get_job_counts(FAULTS))["active"] == 0
    finally:
        await service.close()
