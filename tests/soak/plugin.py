"""The soak's plugin (``plugins: [tests.soak.plugin]``): queue ``qk-soak``.

Every execution is counted (``HINCRBY`` on :func:`runs_key`) before the processor does
anything else, so the soak can tell duplicate runs from retries. What a job does is in
its payload: ``kind`` ``ok`` completes, ``retry`` fails its first ``fail_times`` attempts,
``fail`` fails for good (:class:`UnrecoverableError`).
"""

from __future__ import annotations

import asyncio
from typing import Literal

from pydantic import Field
from redis.asyncio import Redis

from queuekit import JobContext, JobPayload, JobResult, QueuekitSettings, UnrecoverableError
from queuekit.plugins import Plugin
from queuekit.processors import WorkerHost, processor

SOAK_QUEUE = "qk-soak"
JobKind = Literal["ok", "retry", "fail"]


def runs_key(prefix: str) -> str:
    """The hash of executions per job id (outside BullMQ's keys of the queue)."""
    return f"{prefix}:{SOAK_QUEUE}-runs"


class SoakJobData(JobPayload):
    """One soak job (camelCase on the wire, as the Node producer writes it)."""

    user_id: str = Field(min_length=1)
    n: int = Field(ge=0)
    kind: JobKind = "ok"
    fail_times: int = Field(default=0, ge=0)
    source: Literal["python", "node"] = "python"


class RunRecorder:
    """Counts executions in Redis (a plugin service: one per worker process)."""

    def __init__(self, settings: QueuekitSettings) -> None:
        self.key = runs_key(settings.redis.prefix)
        self.client: Redis = Redis.from_url(settings.redis.effective_url,
                                            decode_responses=True,
                                            socket_connect_timeout=1.0, socket_timeout=2.0)

    async def record(self, job_id: str) -> int:
        """Count one execution of ``job_id``; the count so far."""
        return int(await self.client.hincrby(self.key, job_id, 1))


@processor(SOAK_QUEUE, concurrency=10)
class SoakProcessor(WorkerHost[SoakJobData]):
    """Counts the run, works a few ms (so kills catch jobs in flight), then obeys ``kind``."""

    def __init__(self, run_recorder: RunRecorder) -> None:
        self.recorder = run_recorder

    async def process(self, job: JobContext[SoakJobData]) -> JobResult:
        """Record, sleep 0-16 ms, then complete or fail as the payload says."""
        await self.recorder.record(job.id)
        await asyncio.sleep((job.data.n % 5) * 0.004)
        if job.data.kind == "fail":
            raise UnrecoverableError(f"soak job {job.id} fails on purpose")
        if job.data.kind == "retry" and job.attempts_made < job.data.fail_times:
            raise RuntimeError(f"soak job {job.id}: attempt {job.attempts_made + 1} fails")
        return JobResult(success=True, data={"n": job.data.n})


plugin = Plugin(
    name="soak",
    queues={SOAK_QUEUE: SoakJobData},
    processors=[SoakProcessor],
    services={"run_recorder": RunRecorder},
)
