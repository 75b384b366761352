"""The worker-processes scenario: ``queuekit worker --processes P`` (P = 1 and 2) on one
queue of pre-added no-op jobs; queuekit only (the supervisor is queuekit's).

The command starts first; once all P processes' workers are connected (Redis client
names, as ``queuekit health`` counts them) the jobs are added in bulk (chunks of 1,000)
and the clock runs from the first add until nothing is waiting, active or delayed. So
the processes' start-up is not measured, and the adds (in this process) overlap the
processing for both P alike.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from benchmarks.common import REPO_ROOT
from benchmarks.procs import python_env

PROCESS_COUNTS = (1, 2)
CONCURRENCY = 50
_POLL_S = 0.02
_REMAINING = ("waiting", "active", "delayed", "prioritized")


async def _service(redis_url: str, queue: str) -> Any:
    from queuekit import BankSyncJobData, QueueRegistry, RedisQueueService, load_settings

    registry = QueueRegistry()
    registry.register(queue, BankSyncJobData)
    return await RedisQueueService.connect(load_settings(redis={"url": redis_url}), registry)


async def _remaining(service: Any, queue: str) -> int:
    counts = await service.get_job_counts(queue)
    return sum(int(counts.get(state, 0)) for state in _REMAINING)


async def supervised_rate(redis_url: str, queue: str, jobs: int, processes: int,
                          timeout: float) -> float:
    """Jobs per second of ``queuekit worker --processes {processes}`` on ``jobs`` jobs."""
    from queuekit import BankSyncJobData

    service = await _service(redis_url, queue)
    folder = Path(tempfile.mkdtemp(prefix="qk-bench-procs-"))
    config = folder / "worker.yaml"
    config.write_text(yaml.safe_dump({
        "redis": {"url": redis_url}, "plugins": ["benchmarks.noop_plugin"],
        "worker": {"drain_delay": 1.0, "shutdown_timeout": 5.0}}))
    log = (folder / "worker.log").open("wb")
    child = None
    try:
        env = dict(python_env(), QK_BENCH_QUEUE=queue)
        env.pop("QUEUEKIT_CONFIG", None)
        queuekit = Path(sys.executable).with_name("queuekit")
        child = await asyncio.create_subprocess_exec(
            str(queuekit), "worker", "--config", str(config), "--processes", str(processes),
            "--concurrency", str(CONCURRENCY), cwd=REPO_ROOT, env=env, stdout=log,
            stderr=log)
        deadline = time.monotonic() + timeout
        while await service.count_workers(queue) < processes:
            if child.returncode is not None or time.monotonic() > deadline:
                raise RuntimeError(f"queuekit worker --processes {processes} did not start: "
                                   f"{(folder / 'worker.log').read_text()[-1000:]}")
            await asyncio.sleep(_POLL_S)
        started = time.monotonic()
        for first in range(0, jobs, 1000):
            await service.add_jobs(queue, [
                ("sync-transactions", BankSyncJobData(user_id=f"user-{n}", account_id="a",
                                                      sync_type="incremental"))
                for n in range(first, min(jobs, first + 1000))])
        while await _remaining(service, queue):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{processes} process(es) did not finish {jobs} jobs")
            await asyncio.sleep(_POLL_S)
        return jobs / (time.monotonic() - started)
    finally:
        if child is not None and child.returncode is None:
            os.kill(child.pid, signal.SIGTERM)
            try:
                await asyncio.wait_for(child.wait(), 30)
            except TimeoutError:
                os.kill(child.pid, signal.SIGKILL)
                await child.wait()
        log.close()
        await service.close()
        shutil.rmtree(folder, ignore_errors=True)
