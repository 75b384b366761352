"""``wait_for_job``'s wake-ups in memory: every change of a queue wakes its waiters.

Nothing polls: a store change (add, start, finish, retry, clock jump) sets the queue's
change signal. The signal is taken when the watch starts and again at each wake-up,
before the caller re-reads the job, so a change between the read and the wait is never
missed.
"""

from __future__ import annotations

import asyncio
import contextlib

from queuekit.memory.store import MemoryQueue
from queuekit.waiting import JobWatch


class QueueChangeWatch(JobWatch):
    """Wakes on the next change of ``queue`` (any job: the caller re-reads its own)."""

    def __init__(self, queue: MemoryQueue) -> None:
        self._queue = queue
        self._signal = queue.change_signal()

    async def changed(self, timeout: float) -> bool:
        signal = self._signal
        woke = False
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(timeout):
                woke = await signal.wait()
        if woke:
            self._signal = self._queue.change_signal()
        return woke
