"""The plugin ``queuekit worker`` loads in the worker-processes scenario: a no-op processor
on the queue named by ``$QK_BENCH_QUEUE`` (a fresh name per measurement)."""

from __future__ import annotations

import os

from queuekit import BankSyncJobData, JobContext, JobResult
from queuekit.plugins import Plugin
from queuekit.processors import FunctionProcessor

QUEUE = os.environ.get("QK_BENCH_QUEUE", "bench-processes")


async def noop(job: JobContext[BankSyncJobData]) -> JobResult:
    """Nothing to do: the measurement is the queue's own cost."""
    return JobResult(success=True)


plugin = Plugin(name="bench-noop", queues={QUEUE: BankSyncJobData},
                processors=[FunctionProcessor(QUEUE, noop)])
