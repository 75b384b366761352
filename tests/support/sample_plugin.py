"""A plugin for the tests, loaded only by naming it in a configuration's ``plugins:``.

It adds the queue ``qk-sample`` (payload :class:`SampleJobData`) and a processor class
that takes a plugin service and the settings from the container.
"""

from __future__ import annotations

from pydantic import Field

from queuekit import JobContext, JobPayload, JobResult, QueuekitSettings, UnrecoverableError
from queuekit.plugins import Plugin
from queuekit.processors import WorkerHost, processor

SAMPLE_QUEUE = "qk-sample"


class SampleJobData(JobPayload):
    """Multiply ``number`` (queue ``qk-sample``); ``fail`` makes the job fail for good."""

    user_id: str = Field(min_length=1)
    number: int
    fail: bool = False


class Multiplier:
    """A plugin service: the processor gets it injected by name."""

    def __init__(self, settings: QueuekitSettings) -> None:
        self.factor = 2
        self.prefix = settings.redis.prefix

    def apply(self, number: int) -> int:
        """``number`` times the factor."""
        return number * self.factor


@processor(SAMPLE_QUEUE, concurrency=2)
class SampleProcessor(WorkerHost[SampleJobData]):
    """Multiplies the number; reports progress half way."""

    def __init__(self, multiplier: Multiplier) -> None:
        self.multiplier = multiplier

    async def process(self, job: JobContext[SampleJobData]) -> JobResult:
        """Fail on request, else return the product."""
        if job.data.fail:
            raise UnrecoverableError(f"job {job.id} asked to fail")
        await job.update_progress(50)
        return JobResult(success=True, data={"product": self.multiplier.apply(job.data.number),
                                             "prefix": self.multiplier.prefix})


plugin = Plugin(
    name="sample",
    queues={SAMPLE_QUEUE: SampleJobData},
    processors=[SampleProcessor],
    services={"multiplier": Multiplier},
)
