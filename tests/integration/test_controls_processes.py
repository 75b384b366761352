"""The worker limiter and global concurrency hold across worker processes (real Redis)."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from queuekit import RedisQueueService
from tests.conftest import SettingsFactory
from tests.integration.controls_worker import QUEUE, peaks_key, registry, starts_key
from tests.support.redis_server import RedisServer
from tests.support.waiting import eventually

ROOT = Path(__file__).resolve().parents[2]

StartWorkers = Callable[..., list[subprocess.Popen[bytes]]]


@pytest.fixture(params=["fast", "bullmq"])
def engine(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def start_workers(redis_server: RedisServer, key_prefix: str, engine: str,
                  tmp_path: Path) -> Iterator[StartWorkers]:
    """Starts worker processes; each is ended by its own pid at teardown."""
    started: list[subprocess.Popen[bytes]] = []

    def start(count: int, limiter: dict[str, Any] | None = None,
              concurrency: int = 5) -> list[subprocess.Popen[bytes]]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("QUEUEKIT_")}
        env.update({"QUEUEKIT_REDIS__URL": redis_server.url,
                    "QUEUEKIT_REDIS__PREFIX": key_prefix,
                    "QUEUEKIT_WORKER__ENGINE": engine,
                    "QUEUEKIT_WORKER__DRAIN_DELAY": "5",
                    "QUEUEKIT_WORKER__SHUTDOWN_TIMEOUT": "5"})
        if limiter is not None:
            env["QUEUEKIT_WORKER__LIMITER"] = json.dumps({QUEUE: limiter})
        for index in range(count):
            out = (tmp_path / f"worker-{len(started)}.log").open("wb")
            started.append(subprocess.Popen(
                [sys.executable, "-m", "tests.integration.controls_worker",
                 "--concurrency", str(concurrency)], cwd=ROOT, env=env, stdout=out,
                stderr=subprocess.STDOUT))
            del index
        return started[-count:]

    yield start
    for process in started:
        if process.poll() is None:
            os.kill(process.pid, signal.SIGTERM)
    for process in started:
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture
async def qs(make_settings: SettingsFactory) -> AsyncIterator[RedisQueueService]:
    service = await RedisQueueService.connect(make_settings(), registry())
    yield service
    await service.close()


async def wait_for_workers(qs: RedisQueueService, count: int) -> None:
    await eventually(lambda: qs.count_workers(QUEUE), lambda n: n >= count, timeout=30)


async def test_limiter_allows_five_starts_per_second_over_two_processes(
    qs: RedisQueueService, start_workers: StartWorkers, key_prefix: str,
) -> None:
    start_workers(2, limiter={"max": 5, "duration": 1000})
    await wait_for_workers(qs, 2)
    jobs = await qs.add_jobs(QUEUE, [("tick", {"seconds": 0}) for _ in range(15)])
    for job in jobs:
        await qs.wait_for_job(QUEUE, job.id, timeout=30)
    client = qs.connection.client
    starts = sorted(json.loads(s)["at"] for s in await client.lrange(starts_key(key_prefix),
                                                                      0, -1))
    pids = {json.loads(s)["pid"] for s in await client.lrange(starts_key(key_prefix), 0, -1)}
    assert len(starts) == 15
    # No second holds more than 5 starts. A start is stamped by the processor just
    # after moveToActive; 50 ms of the window are left as slack for that stamp.
    for first in starts:
        assert len([t for t in starts if first <= t < first + 950]) <= 5, starts
    # Three windows: 0 s, 1 s, 2 s; the workers waited the limiter's ttl, not
    # drainDelay (5 s) and not a busy loop.
    assert 1900 <= starts[-1] - starts[0] < 4500, starts
    assert len(pids) == 2  # both processes took part


async def test_global_concurrency_two_over_two_processes(
    qs: RedisQueueService, start_workers: StartWorkers, key_prefix: str,
) -> None:
    await qs.set_global_concurrency(QUEUE, 2)
    # One slot per process: two jobs at once can only be the two processes together.
    start_workers(2, concurrency=1)
    await wait_for_workers(qs, 2)
    jobs = await qs.add_jobs(QUEUE, [("tick", {"seconds": 0.2}) for _ in range(10)])
    client = qs.connection.client
    active_key = f"{key_prefix}:{QUEUE}:active"
    sampled: list[int] = []

    async def sample() -> None:
        while True:
            sampled.append(int(await client.llen(active_key)))
            await asyncio.sleep(0.01)

    sampler = asyncio.ensure_future(sample())
    began = asyncio.get_running_loop().time()
    try:
        for job in jobs:
            await qs.wait_for_job(QUEUE, job.id, timeout=60)
    finally:
        sampler.cancel()
    # 5 rounds of 0.2 s; freed slots are taken at once, not after drainDelay (5 s).
    assert asyncio.get_running_loop().time() - began < 4.5
    peaks = [int(p) for p in await client.lrange(peaks_key(key_prefix), 0, -1)]
    assert len(peaks) == 10
    assert max(sampled) <= 2, sampled
    assert max(peaks) <= 2, peaks
    assert max(sampled) == 2  # it did run two at once
    pids = {json.loads(s)["pid"] for s in await client.lrange(starts_key(key_prefix), 0, -1)}
    assert len(pids) == 2
