"""Cancel requests still reach a worker after Redis restarted: its subscription comes back."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

from queuekit import JobContext, JobResult, JobState, QueueUnavailableError
from queuekit.redis.keys import cancel_channel
from tests.conftest import SettingsFactory
from tests.faults.conftest import KEEP_ALL, ServiceFactory, worker_options
from tests.faults.worker_proc import FAULTS, FaultJobData
from tests.support.redis_server import RedisServer
from tests.support.waiting import eventually

OwnRedis = Callable[..., RedisServer]
T = TypeVar("T")


def tolerant(call: Callable[[], Awaitable[T]]) -> Callable[[], Awaitable[T | None]]:
    """``call``, answering None while Redis is still coming back."""
    async def probe() -> T | None:
        try:
            return await call()
        except QueueUnavailableError:
            return None
    return probe


async def test_cancel_reaches_the_worker_after_a_redis_restart(
    own_redis: OwnRedis, make_settings: SettingsFactory, faults_service: ServiceFactory,
    engine: str,
) -> None:
    server = own_redis("--appendonly", "yes", "--appendfsync", "always")
    settings = make_settings(redis={"url": server.url},
                             worker=worker_options(engine, run_retry_delay=200),
                             jobs={**KEEP_ALL, "attempts": 3,
                                                     "backoff": {"type": "fixed", "delay": 10}},
                             breaker={"fail_max": 100, "reset_timeout": 0.2})
    qs = await faults_service(settings)

    async def process(job: JobContext[FaultJobData]) -> JobResult:
        await asyncio.sleep(job.data.seconds)
        return JobResult(success=True)

    qs.create_worker(FAULTS, process)
    channel = cancel_channel(qs.prefix, FAULTS)

    async def subscribers() -> int:
        return int((await qs.connection.client.pubsub_numsub(channel))[0][1])

    await eventually(subscribers, lambda n: n == 1)  # subscribed before the restart
    server.restart()  # the worker's connections, its subscription included, are cut
    job = await eventually(
        tolerant(lambda: qs.add_job(FAULTS, "long", {"label": "l", "seconds": 30})),
        lambda j: j is not None, timeout=20)
    assert job is not None
    await eventually(lambda: qs.get_job(FAULTS, job.id),
                     lambda i: i is not None and i.state == JobState.ACTIVE, timeout=20)
    # The subscription may come back a moment after the fetch loop: ask until it lands.
    await eventually(tolerant(lambda: qs.cancel_job(FAULTS, job.id)), bool, timeout=10)
    info = await qs.wait_for_job(FAULTS, job.id, timeout=5)
    assert (info.state, info.failed_reason) == (JobState.FAILED, "cancelled")
    assert await subscribers() == 1
