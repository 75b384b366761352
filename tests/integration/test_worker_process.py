"""``queuekit worker`` as a real process: plugins from the configuration, jobs from this
process, one log line per state change, SIGTERM ends it with exit 0."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from queuekit import (
    JobResult,
    JobState,
    QueueName,
    QueueRegistry,
    RedisQueueService,
    load_settings,
)
from tests.support.configs import DEMO_PLUGIN, PROJECT_ROOT, SAMPLE_PLUGIN, write_config
from tests.support.redis_server import RedisServer
from tests.support.sample_plugin import SAMPLE_QUEUE, SampleJobData
from tests.support.waiting import eventually

QUEUEKIT = Path(sys.executable).with_name("queuekit")


class WorkerProcess:
    """One ``queuekit worker`` subprocess; its log goes to a file (no pipe to fill)."""

    def __init__(self, args: list[str], log: Path) -> None:
        self.log = log
        env = dict(os.environ, PYTHONPATH=str(PROJECT_ROOT))
        env.pop("QUEUEKIT_CONFIG", None)
        with log.open("wb") as out:
            self.process = subprocess.Popen([str(QUEUEKIT), "worker", *args], env=env,
                                            stdout=out, stderr=subprocess.STDOUT,
                                            cwd=PROJECT_ROOT)

    def output(self) -> str:
        return self.log.read_text()

    def terminate(self, timeout: float = 20) -> int:
        """SIGTERM (to this pid only) and the exit code."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
        return self.process.wait(timeout)

    def kill(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(10)


Spawn = Callable[[list[str]], WorkerProcess]


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Spawn]:
    """Starts ``queuekit worker ARGS``; kills (by pid) whatever is still running at the end."""
    started: list[WorkerProcess] = []

    def start(args: list[str]) -> WorkerProcess:
        worker = WorkerProcess(args, tmp_path / f"worker-{len(started)}.log")
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.kill()


async def client(redis_server: RedisServer, prefix: str) -> RedisQueueService:
    registry = QueueRegistry()
    registry.register(SAMPLE_QUEUE, SampleJobData)
    return await RedisQueueService.connect(
        load_settings(redis={"url": redis_server.url, "prefix": prefix}), registry)


async def test_worker_runs_a_plugin_named_only_in_its_config(
    redis_server: RedisServer, key_prefix: str, tmp_path: Path,
    spawn: Spawn,
) -> None:
    config = write_config(tmp_path / "worker.yaml", redis_server.url, key_prefix,
                          [SAMPLE_PLUGIN])
    worker = spawn(["--config", str(config)])
    qs = await client(redis_server, key_prefix)
    try:
        jobs = [await qs.add_job(SAMPLE_QUEUE, "multiply", {"userId": "u1", "number": n})
                for n in (3, 4, 5)]
        failing = await qs.add_job(SAMPLE_QUEUE, "multiply",
                                   {"userId": "u1", "number": 1, "fail": True})
        infos = [await qs.wait_for_job(SAMPLE_QUEUE, job.id, timeout=30) for job in jobs]
        failed = await qs.wait_for_job(SAMPLE_QUEUE, failing.id, timeout=30)
    finally:
        await qs.close()

    # The processor class got its plugin service, which got the settings, injected.
    assert [i.state for i in infos] == [JobState.COMPLETED] * 3
    assert [i.return_value for i in infos] == [
        JobResult(success=True, data={"product": 2 * n, "prefix": key_prefix})
        for n in (3, 4, 5)]
    assert failed.state == JobState.FAILED
    assert failed.failed_reason == f"job {failing.id} asked to fail"

    assert worker.terminate() == 0
    out = worker.output()
    assert "received SIGTERM; shutting down gracefully" in out
    assert "all workers stopped" in out
    for job in jobs:
        assert f"job {job.id} on {SAMPLE_QUEUE} active (attempt 1 of 3)" in out
        assert f"job {job.id} on {SAMPLE_QUEUE} completed" in out
    assert f"job {failing.id} on {SAMPLE_QUEUE} failed (attempt 1 of 3)" in out
    # Only the configured plugin: no demo queue got a worker.
    assert "serving qk-sample\n" in out
    assert "worker for bank-sync" not in out


async def test_queues_option_leaves_other_queues_waiting(
    redis_server: RedisServer, key_prefix: str, tmp_path: Path,
    spawn: Spawn,
) -> None:
    config = write_config(tmp_path / "worker.yaml", redis_server.url, key_prefix,
                          [DEMO_PLUGIN])
    qs = await client(redis_server, key_prefix)
    try:
        sync = await qs.add_job(QueueName.BANK_SYNC, "sync-transactions",
                                {"userId": "u1", "accountId": "a1", "syncType": "full"})
        notes = [await qs.add_job(QueueName.NOTIFICATIONS, "send-notification",
                                  {"userId": "u1", "type": "email", "templateId": f"t{n}"})
                 for n in range(3)]
        worker = spawn(["--config", str(config), "--queues", "notifications",
                        "--concurrency", "2"])
        for note in notes:
            info = await qs.wait_for_job(QueueName.NOTIFICATIONS, note.id, timeout=30)
            assert info.state == JobState.COMPLETED
        await eventually(lambda: qs.count_workers(QueueName.NOTIFICATIONS), lambda n: n == 1)
        assert await qs.count_workers(QueueName.BANK_SYNC) == 0
        info_sync = await qs.get_job(QueueName.BANK_SYNC, sync.id)
        assert info_sync is not None
        assert info_sync.state == JobState.WAITING
        assert (await qs.get_job_counts(QueueName.BANK_SYNC))["waiting"] == 1
    finally:
        await qs.close()
    assert worker.terminate() == 0
    out = worker.output()
    assert "worker for notifications started (concurrency 2)" in out
    assert "worker for bank-sync" not in out
