"""A worker process for the queue-control tests: ``python -m tests.integration.controls_worker``.

It builds a :class:`RedisQueueService` from the ``QUEUEKIT_*`` environment (the test sets
the Redis URL, prefix, engine and ``worker.limiter``) and serves the ``controls`` queue
until SIGTERM. Each job records its start (epoch ms and pid) in :func:`starts_key` and how
many jobs ran at that moment in :func:`peaks_key`, then sleeps ``seconds``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import time

from pydantic import Field
from redis.asyncio import Redis

from queuekit import (
    JobContext,
    JobPayload,
    JobResult,
    QueueRegistry,
    RedisQueueService,
    load_settings,
)
from queuekit.runtime.runner import serve

QUEUE = "controls"


class ControlJobData(JobPayload):
    """How long a job of the ``controls`` queue runs."""

    seconds: float = Field(default=0.0, ge=0)


def registry() -> QueueRegistry:
    found = QueueRegistry()
    found.register(QUEUE, ControlJobData)
    return found


def starts_key(prefix: str) -> str:
    return f"{prefix}:{QUEUE}-test:starts"


def peaks_key(prefix: str) -> str:
    return f"{prefix}:{QUEUE}-test:peaks"


def running_key(prefix: str) -> str:
    return f"{prefix}:{QUEUE}-test:running"


async def main(concurrency: int) -> None:
    settings = load_settings()
    prefix = settings.redis.prefix
    service = RedisQueueService(settings, registry())
    await service.start()
    recorder: Redis = Redis.from_url(settings.redis.effective_url, decode_responses=True,
                                     socket_connect_timeout=1.0, socket_timeout=5.0)

    async def process(job: JobContext[ControlJobData]) -> JobResult:
        now = time.time() * 1000
        running = int(await recorder.incr(running_key(prefix)))
        await recorder.rpush(starts_key(prefix), json.dumps({"at": now, "pid": os.getpid()}))
        await recorder.rpush(peaks_key(prefix), running)
        try:
            await asyncio.sleep(job.data.seconds)
        finally:
            await recorder.decr(running_key(prefix))
        return JobResult(success=True)

    try:
        await serve(service, {QUEUE: process}, concurrency={QUEUE: concurrency})
    finally:
        await recorder.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=5)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING,
                        format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s")
    asyncio.run(main(args.concurrency))
