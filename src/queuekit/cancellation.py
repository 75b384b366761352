"""Job timeouts and cancellation (BullMQ has them only in Pro).

A running attempt is guarded by an :class:`AttemptGuard`: its ``timeout`` (a timer on the
event loop) or a ``cancel_job`` request cancels the task that awaits the processor, so
the processor sees :class:`asyncio.CancelledError` at its next ``await`` and
``JobContext.cancelled`` turns True. The worker template turns that into a failed attempt:
:class:`AttemptTimeoutError` (retried per ``attempts``) or :class:`JobCancelledError`
(failed for good, reason ``"cancelled"``). A processor that never yields (a thread, or
CPU work on the loop) cannot be interrupted: its attempt is failed as soon as the loop
gets control and its eventual result is discarded.

``cancel_job`` removes a job that is waiting, prioritized or delayed; a running one gets a
request that reaches its worker in any process (Redis: pub/sub, see
``queuekit.redis.cancel``).
"""

from __future__ import annotations

import abc
import asyncio
import logging
import time
from typing import Any

from queuekit.errors import AttemptTimeoutError, JobCancelledError
from queuekit.jobs import JobContext

log = logging.getLogger("queuekit")

#: How long a cancel request for a job this worker is not (yet) running is remembered:
#: it may arrive just before the job's fetch is registered, or before a retry starts.
CANCEL_MEMORY_S = 30.0


class AttemptGuard:
    """The timeout and cancellation of one running attempt (one per attempt)."""

    __slots__ = ("_context", "_task", "_timer", "reason", "task", "timeout_ms")

    def __init__(self, context: JobContext[Any], timeout_ms: int) -> None:
        self._context = context
        #: The attempt's task (the one that started it).
        self.task = self._task = asyncio.current_task()
        self.timeout_ms = timeout_ms
        self.reason: str | None = None
        self._timer = (asyncio.get_running_loop().call_later(
            timeout_ms / 1000, self.interrupt, "timeout") if timeout_ms > 0 else None)

    def interrupt(self, reason: str) -> bool:
        """End the attempt (``"timeout"`` or ``"cancelled"``); False if already ended."""
        if self.reason is not None or self._task is None:
            return False
        self.reason = reason
        self._context.cancelled = True
        # The attempt's own task (a processor cancelling its own job, or a request known
        # at the start) is not cancelled: the worker checks ``reason`` itself.
        if self._task is not asyncio.current_task():
            self._task.cancel()
        return True

    def close(self) -> None:
        """The processor returned or raised: no timer, no interruption from now on.

        A processor that blocked the loop past its timeout never let the timer run: its
        attempt is timed out here all the same.
        """
        timer = self._timer
        if timer is not None:
            timer.cancel()
            if self.reason is None and asyncio.get_running_loop().time() >= timer.when():
                self.reason = "timeout"
                self._context.cancelled = True
        self._task = None

    def error(self) -> Exception:
        """What the attempt fails with."""
        if self.reason == "timeout":
            return AttemptTimeoutError(self.timeout_ms)
        return JobCancelledError()


class CancelRegistry:
    """A worker's running attempts by job id, and recent requests for others."""

    def __init__(self) -> None:
        self.running: dict[str, AttemptGuard] = {}
        self._requested: dict[str, float] = {}

    def start(self, job_id: str, context: JobContext[Any], timeout_ms: int) -> AttemptGuard:
        """Guard an attempt that starts now (cancelled at once if it was requested)."""
        guard = AttemptGuard(context, timeout_ms)
        self.running[job_id] = guard
        if self._requested.pop(job_id, None) is not None:
            guard.interrupt("cancelled")
        return guard

    def finish(self, job_id: str, guard: AttemptGuard) -> None:
        guard.close()
        if self.running.get(job_id) is guard:
            del self.running[job_id]

    def request(self, job_id: str, remember: bool = True) -> bool:
        """Cancel ``job_id`` if it runs here; else remember the request for a while."""
        guard = self.running.get(job_id)
        if guard is not None:
            return guard.interrupt("cancelled")
        if remember:
            now = time.monotonic()
            self._requested = {k: t for k, t in self._requested.items()
                               if now - t < CANCEL_MEMORY_S}
            self._requested[job_id] = now
        return False


class CancellationMixin(abc.ABC):
    """``QueueService.cancel_job``; the backends implement :meth:`_cancel_job`."""

    async def cancel_job(self, queue: str, job_id: str) -> bool:
        """Cancel job ``job_id`` of ``queue`` from any process.

        A waiting, prioritized or delayed job is removed. A running one is interrupted
        (its processor sees ``asyncio.CancelledError``; ``job.cancelled`` turns True) and
        failed without retry, reason ``"cancelled"``. Returns True when the job was
        removed or the request reached a worker (best effort: a processor that never
        yields is failed, but runs on until it returns); False when there is nothing to
        cancel (no such job, already finished, waiting for its children).
        """
        self._ensure_open()
        done = await self._cancel_job(str(queue), str(job_id))
        log.info("cancel of job %s on %s: %s", job_id, queue,
                 "done" if done else "nothing to cancel",
                 extra={"queue": str(queue), "job_id": str(job_id)})
        return done

    @abc.abstractmethod
    def _ensure_open(self) -> None: ...

    @abc.abstractmethod
    async def _cancel_job(self, queue: str, job_id: str) -> bool:
        """Remove the job if it waits, or send a cancel request to its worker."""
