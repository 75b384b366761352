"""A plugin for the supervisor tests: queue ``qk-pids``; each job returns the pid of the
process that ran it and appends ``<job id> <pid>`` to ``$QK_RUNS_FILE``.

With ``QK_CRASH_AT_START`` set, building the processor ends the process at once (exit 7):
a worker that crashes every time it starts.
"""

from __future__ import annotations

import asyncio
import os

from pydantic import Field

from queuekit import JobContext, JobPayload, JobResult
from queuekit.plugins import Plugin
from queuekit.processors import WorkerHost, processor

PID_QUEUE = "qk-pids"


class PidJobData(JobPayload):
    """One job: ``n`` is only there to tell jobs apart."""

    user_id: str = Field(min_length=1)
    n: int


@processor(PID_QUEUE, concurrency=4)
class PidProcessor(WorkerHost[PidJobData]):
    """Records which process ran the job."""

    def __init__(self) -> None:
        if os.environ.get("QK_CRASH_AT_START"):
            os._exit(7)
        self.runs = os.environ.get("QK_RUNS_FILE")

    async def process(self, job: JobContext[PidJobData]) -> JobResult:
        """Take a little time (so jobs spread over the processes), then report the pid."""
        await asyncio.sleep(0.01)
        if self.runs:
            # One short O_APPEND write per job: lines of concurrent processes never mix.
            fd = os.open(self.runs, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, f"{job.id} {os.getpid()}\n".encode())
            finally:
                os.close(fd)
        return JobResult(success=True, data={"pid": os.getpid()})


plugin = Plugin(name="pids", queues={PID_QUEUE: PidJobData}, processors=[PidProcessor])
