"""A worker process for the fault tests: ``python -m tests.faults.worker_proc``.

It builds a :class:`RedisQueueService` from the ``QUEUEKIT_*`` environment (the test sets
the Redis URL, key prefix and worker timings), runs the ``faults`` queue through
:func:`queuekit.runner.serve` until SIGTERM/SIGINT, and exits 0 after a graceful close.

Every execution of a job is counted with ``INCR`` on :func:`runs_key` before the
processor does anything else, so a test can tell "exactly once" from "at least once".
What a job does is in its payload (:class:`FaultJobData`): sleep, or kill its own
process with SIGKILL as a crashing native library would.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal

from pydantic import Field
from redis.asyncio import Redis

from queuekit import (
    JobContext,
    JobPayload,
    JobResult,
    Processor,
    QueueRegistry,
    RedisQueueService,
    load_settings,
)
from queuekit.runner import serve

#: The queue every fault test uses.
FAULTS = "faults"


class FaultJobData(JobPayload):
    """What a fault-test job does when it runs."""

    label: str = Field(min_length=1)
    seconds: float = Field(default=0.0, ge=0, description="Sleep this long, then complete.")
    first_run_seconds: float | None = Field(
        default=None, ge=0, description="Sleep this long instead on the job's first run."
    )
    crash: bool = Field(default=False, description="SIGKILL the worker process on every run.")


def registry() -> QueueRegistry:
    """The default queues plus ``faults``."""
    found = QueueRegistry()
    found.register(FAULTS, FaultJobData)
    return found


def runs_key(prefix: str, job_id: str) -> str:
    """The counter of executions of ``job_id`` (under the test's own key prefix)."""
    return f"{prefix}:{FAULTS}-runs:{job_id}"


def make_processor(recorder: Redis, prefix: str) -> Processor:
    """The ``faults`` processor, recording each execution through ``recorder``."""

    async def process(job: JobContext[FaultJobData]) -> JobResult:
        run = int(await recorder.incr(runs_key(prefix, job.id)))
        if job.data.crash:
            logging.getLogger("faults").warning("job %s: crashing on purpose", job.id)
            os.kill(os.getpid(), signal.SIGKILL)
        seconds = job.data.seconds
        if run == 1 and job.data.first_run_seconds is not None:
            seconds = job.data.first_run_seconds
        await asyncio.sleep(seconds)
        return JobResult(success=True, data={"pid": os.getpid(), "run": run})

    return process


async def main(concurrency: int) -> None:
    """Serve the ``faults`` queue until a stop signal."""
    settings = load_settings()
    service = RedisQueueService(settings, registry())
    await service.start()
    recorder: Redis = Redis.from_url(settings.redis.effective_url, decode_responses=True,
                                     socket_connect_timeout=1.0, socket_timeout=2.0)
    try:
        await serve(service, {FAULTS: make_processor(recorder, settings.redis.prefix)},
                    concurrency={FAULTS: concurrency})
    finally:
        await recorder.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(process)d %(name)s %(levelname)s %(message)s")
    asyncio.run(main(args.concurrency))
