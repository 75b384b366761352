"""``QueueService.wait_for_job``, event-driven on every backend (a mixin of the service).

The backend wakes the caller when the job may have finished (Redis: BullMQ's event stream,
one reader per queue and process; memory: the queue's change signal); the caller then
re-reads the job, so a wake-up is only a hint. Without one, the job is re-read every
:data:`WAIT_RECHECK` seconds: the fallback for a missed event, not the way a finished job
is noticed.
"""

from __future__ import annotations

import abc
import time

from queuekit.errors import JobNotFoundError, JobTimeoutError
from queuekit.jobs import JobInfo, JobState

#: Seconds between re-reads of a job when no wake-up came (a missed event, a restart).
WAIT_RECHECK = 1.0


class JobWatch(abc.ABC):
    """A backend's wake-ups for ``wait_for_job``: a subscription to one job's changes.

    A wake-up is a hint, not a state: the caller re-reads the job after each one, so a
    spurious wake-up costs one read and a missed one costs at most one ``timeout``. A
    backend that read the job in the wake-up's own round trip hands that read over
    (:meth:`take_read`) instead.
    """

    #: True when the watch will see every change of the job since it was added (the
    #: backend vouches for it), so the caller needs no first look at the job.
    covers_add: bool = False

    @abc.abstractmethod
    async def changed(self, timeout: float) -> bool:
        """Wait until the job may have changed (True) or ``timeout`` seconds passed (False)."""

    def take_read(self) -> JobInfo | None:
        """The job as read with the last wake-up, after the change that caused it (what
        ``get_job`` would answer then), once; None: the caller reads it itself."""
        return None

    async def aclose(self) -> None:  # noqa: B027 - nothing to release by default
        """Unsubscribe."""


class JobWaitMixin(abc.ABC):
    """``wait_for_job`` on top of ``get_job`` and the backend's ``_watch_job``."""

    async def wait_for_job(self, queue: str, job_id: str, timeout: float = 30.0) -> JobInfo:
        """Wait until the job is completed or failed for good, and return it.

        Raises :class:`JobTimeoutError` after ``timeout`` seconds and
        :class:`JobNotFoundError` when there is no such job.
        """
        queue, job_id = str(queue), str(job_id)
        deadline = time.monotonic() + timeout
        # Subscribe before the first look, so a job that finishes in between still wakes
        # us. The first look reads only the state (cheap while the job still runs); a
        # watch that sees every change since the add needs none (None: not looked at).
        watch = await self._watch_job(queue, job_id)
        try:
            state: JobState | None = None
            read: JobInfo | None = None  # the job as read with a wake-up, if it was
            if not watch.covers_add:
                state = await self._job_state(queue, job_id)
                if state is None:
                    raise JobNotFoundError(f"no job {job_id!r} on queue {queue!r}")
            while True:
                if state is not None and state.finished:
                    info = read or await self.get_job(queue, job_id)
                    if info is None:
                        raise JobNotFoundError(f"no job {job_id!r} on queue {queue!r}")
                    if info.state.finished:
                        return info
                    state = info.state
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise JobTimeoutError(f"job {job_id!r} on queue {queue!r} is still "
                                          f"{state or 'unfinished'} after {timeout:g} s")
                await watch.changed(min(remaining, WAIT_RECHECK))
                read = watch.take_read()
                state = JobState.COMPLETED  # re-read the whole job: most wake-ups finish it
        finally:
            await watch.aclose()

    @abc.abstractmethod
    async def get_job(self, queue: str, job_id: str) -> JobInfo | None:
        """The job ``job_id`` of ``queue``, or None when there is none."""

    async def _job_state(self, queue: str, job_id: str) -> JobState | None:
        """The job's state, None when there is no such job (backends may read less)."""
        info = await self.get_job(queue, job_id)
        return None if info is None else info.state

    @abc.abstractmethod
    async def _watch_job(self, queue: str, job_id: str) -> JobWatch:
        """Subscribe to changes of one job (``wait_for_job``'s wake-ups)."""
