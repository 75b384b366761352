"""Declared job schedulers (``schedules:`` in the configuration) with real processes.

Two ``queuekit worker`` processes that start together with the same declaration end
with one scheduler and one pending run per id (a rolling deploy); a declaration later
removed from the configuration is removed at the next start, and a scheduler created
in code is left alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from queuekit import RedisQueueService
from tests.integration.test_worker_process import WorkerProcess, client
from tests.support.configs import SAMPLE_PLUGIN, write_config
from tests.support.redis_server import RedisServer
from tests.support.sample_plugin import SAMPLE_QUEUE
from tests.support.waiting import eventually

HOUR = 3600_000
DECLARED = {
    "hourly-multiply": {"queue": SAMPLE_QUEUE, "every": HOUR, "name": "multiply",
                        "data": {"userId": "u1", "number": 21}},
    "nightly-multiply": {"queue": SAMPLE_QUEUE, "pattern": "0 3 * * *",
                         "tz": "Europe/Berlin", "data": {"userId": "u1", "number": 2}},
}


@pytest.fixture
def workers(tmp_path: Path) -> Iterator[list[WorkerProcess]]:
    started: list[WorkerProcess] = []
    yield started
    for worker in started:
        worker.kill()


async def runs(qs: RedisQueueService, scheduler_id: str, state: str) -> list[str]:
    jobs = await qs.get_jobs(SAMPLE_QUEUE, state, limit=50)
    return [j.id for j in jobs if j.id.startswith(f"repeat:{scheduler_id}:")]


async def serving(worker: WorkerProcess) -> None:
    async def output() -> str:
        if worker.process.poll() is not None:
            raise AssertionError(f"worker exited: {worker.output()}")
        return worker.output()

    await eventually(output, lambda out: "serving qk-sample" in out, timeout=30)


async def test_two_processes_starting_together_make_one_scheduler_and_one_run(
    redis_server: RedisServer, key_prefix: str, tmp_path: Path,
    workers: list[WorkerProcess],
) -> None:
    config = write_config(tmp_path / "worker.yaml", redis_server.url, key_prefix,
                          [SAMPLE_PLUGIN], schedules=DECLARED)
    workers += [WorkerProcess(["--config", str(config)], tmp_path / f"w{n}.log")
                for n in range(2)]
    qs = await client(redis_server, key_prefix)
    try:
        for worker in workers:
            await serving(worker)
        await qs.upsert_job_scheduler(SAMPLE_QUEUE, "made-in-code", every=HOUR,
                                                data={"userId": "u2", "number": 1})
        # The hourly scheduler's first run is due at once: it runs exactly once.
        await eventually(lambda: runs(qs, "hourly-multiply", "completed"),
                         lambda done: len(done) == 1, timeout=30)
        schedulers = {s.id: s for s in await qs.get_job_schedulers(SAMPLE_QUEUE)}
        assert set(schedulers) == {"hourly-multiply", "nightly-multiply", "made-in-code"}
        for scheduler_id in DECLARED:
            assert len(await runs(qs, scheduler_id, "delayed")) == 1, scheduler_id
        assert await runs(qs, "nightly-multiply", "completed") == []
        assert schedulers["hourly-multiply"].data.number == 21
        for worker in workers:
            assert "declared job scheduler hourly-multiply of qk-sample upserted" in (
                worker.output())
        assert [w.terminate() for w in workers] == [0, 0]

        # The nightly declaration is dropped from the configuration: the next start
        # removes it and its pending run; the hourly one keeps its pending run.
        pending = await runs(qs, "hourly-multiply", "delayed")
        before = await qs.get_job_scheduler(SAMPLE_QUEUE, "made-in-code")
        assert before is not None
        config = write_config(tmp_path / "worker.yaml", redis_server.url, key_prefix,
                              [SAMPLE_PLUGIN],
                              schedules={"hourly-multiply": DECLARED["hourly-multiply"]})
        workers.append(WorkerProcess(["--config", str(config)], tmp_path / "w2.log"))
        await serving(workers[-1])
        ids = {s.id for s in await qs.get_job_schedulers(SAMPLE_QUEUE)}
        assert ids == {"hourly-multiply", "made-in-code"}
        assert await runs(qs, "nightly-multiply", "delayed") == []
        assert await runs(qs, "hourly-multiply", "delayed") == pending
        assert len(await runs(qs, "hourly-multiply", "completed")) == 1
        kept = await qs.get_job_scheduler(SAMPLE_QUEUE, "made-in-code")
        assert kept is not None and kept.next_run_at == before.next_run_at
        assert "job scheduler nightly-multiply of qk-sample removed: no longer declared" in (
            workers[-1].output())
    finally:
        await qs.close()
    assert workers[-1].terminate() == 0
