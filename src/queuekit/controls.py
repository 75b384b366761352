"""Queue controls and deduplication: the public methods :class:`QueueService` inherits.

BullMQ's semantics on both backends: ``pause`` keeps jobs in ``waiting`` and marks the
queue paused (Node workers honour it, and queuekit's workers honour a Node pause);
``remove_job``, ``clean``, ``drain`` and ``obliterate`` are BullMQ's admin scripts;
``set_global_concurrency`` caps active jobs across every worker process. Deduplication
(``JobOptions(deduplication=...)``) is handled by :meth:`_add_deduplicated_job`, which
``add_job`` calls for such jobs.
"""

from __future__ import annotations

import abc
import dataclasses
import logging

from queuekit.errors import FieldError, PayloadValidationError
from queuekit.jobs import JobInfo, JobState
from queuekit.records import PreparedJob

log = logging.getLogger("queuekit")

#: The states :meth:`ControlsMixin.clean` removes jobs from.
CLEANABLE_STATES: tuple[str, ...] = (
    JobState.COMPLETED, JobState.FAILED, JobState.DELAYED, JobState.WAITING,
    JobState.PRIORITIZED,
)


def _invalid(subject: str, field: str, message: str) -> PayloadValidationError:
    return PayloadValidationError(subject, [FieldError(field, message)])


def _check_int(subject: str, field: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _invalid(subject, field, f"must be an int, got {value!r}")
    if value < minimum:
        raise _invalid(subject, field, f"must be >= {minimum}, got {value}")
    return value


def _check_id(subject: str, field: str, value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _invalid(subject, field, f"must be a non-empty string, got {value!r}")
    return value


class ControlsMixin(abc.ABC):
    """Pause, resume, remove, clean, drain, obliterate, global concurrency, dedup look-up."""

    # -- deduplication ---------------------------------------------------------------

    async def _add_deduplicated_job(self, job: PreparedJob) -> JobInfo:
        """Add a job with a ``deduplication`` option; a duplicate returns the existing job."""
        job_id, duplicate = await self._add_dedup(job)
        extra = {"queue": job.queue, "job_id": job_id}
        if not duplicate:
            log.debug("job %s added to %s", job_id, job.queue, extra=extra)
            return job.info(job_id, self._now_ms())
        log.debug("job on %s deduplicated: %s exists", job.queue, job_id, extra=extra)
        existing = await self.get_job(job.queue, job_id)
        if existing is not None:
            return existing
        # It finished and was removed between the add and this read.
        return dataclasses.replace(job.info(job_id, self._now_ms()), state=JobState.UNKNOWN)

    async def get_deduplication_job_id(self, queue: str, dedup_id: str) -> str | None:
        """The id of the job that currently holds deduplication id ``dedup_id``, or None."""
        self._ensure_open()
        dedup_id = _check_id("deduplication look-up", "dedup_id", dedup_id)
        return await self._get_dedup_job_id(str(queue), dedup_id)

    # -- pause -----------------------------------------------------------------------

    async def pause(self, queue: str) -> None:
        """Stop every worker of ``queue`` (any process) from starting jobs; running ones
        finish. Jobs stay waiting and can still be added (BullMQ 6's ``pause``)."""
        self._ensure_open()
        await self._set_paused(str(queue), True)
        log.info("queue %s paused", queue, extra={"queue": str(queue)})

    async def resume(self, queue: str) -> None:
        """Let workers of ``queue`` start jobs again."""
        self._ensure_open()
        await self._set_paused(str(queue), False)
        log.info("queue %s resumed", queue, extra={"queue": str(queue)})

    async def is_paused(self, queue: str) -> bool:
        """Whether ``queue`` is paused (by queuekit or by a Node ``queue.pause()``)."""
        self._ensure_open()
        return await self._is_paused(str(queue))

    # -- removing jobs ---------------------------------------------------------------

    async def remove_job(self, queue: str, job_id: str) -> bool:
        """Remove one job (and its logs); False when there is no such job.

        Raises :class:`~queuekit.errors.JobActiveError` for a job a worker holds locked.
        """
        self._ensure_open()
        job_id = _check_id("job removal", "job_id", job_id)
        removed = await self._remove_job(str(queue), job_id)
        if removed:
            log.info("job %s removed from %s", job_id, queue,
                     extra={"queue": str(queue), "job_id": job_id})
        return removed

    async def clean(self, queue: str, state: str = JobState.COMPLETED, grace_ms: int = 0,
                    limit: int = 1000) -> list[str]:
        """Remove up to ``limit`` jobs in ``state`` older than ``grace_ms``; return their ids.

        ``state`` is one of :data:`CLEANABLE_STATES`; age is from when a job finished
        (completed, failed) or was created (the others). ``limit=0`` removes them all.
        """
        self._ensure_open()
        state = str(state)
        if state not in CLEANABLE_STATES:
            raise _invalid("clean", "state",
                           f"must be one of {', '.join(CLEANABLE_STATES)}, got {state!r}")
        grace_ms = _check_int("clean", "grace_ms", grace_ms, 0)
        limit = _check_int("clean", "limit", limit, 0)
        removed = await self._clean(str(queue), state, grace_ms, limit)
        log.info("%d %s job(s) cleaned from %s", len(removed), state, queue,
                 extra={"queue": str(queue)})
        return removed

    async def drain(self, queue: str) -> None:
        """Remove every waiting, prioritized and delayed job of ``queue`` (active,
        completed and failed ones stay)."""
        self._ensure_open()
        await self._drain(str(queue))
        log.info("queue %s drained", queue, extra={"queue": str(queue)})

    async def obliterate(self, queue: str, force: bool = False) -> None:
        """Delete ``queue`` and every job and key of it, irreversibly.

        Raises :class:`~queuekit.errors.JobActiveError` while jobs are active, unless
        ``force`` (their workers then fail to finish them).
        """
        self._ensure_open()
        await self._obliterate(str(queue), bool(force))
        log.warning("queue %s obliterated", queue, extra={"queue": str(queue)})

    # -- global concurrency ----------------------------------------------------------

    async def set_global_concurrency(self, queue: str, n: int | None) -> None:
        """At most ``n`` jobs of ``queue`` active at once across every worker process
        (BullMQ's global concurrency); None removes the cap."""
        self._ensure_open()
        if n is not None:
            n = _check_int("global concurrency", "n", n, 1)
        await self._set_global_concurrency(str(queue), n)
        log.info("global concurrency of %s set to %s", queue, n, extra={"queue": str(queue)})

    async def get_global_concurrency(self, queue: str) -> int | None:
        """The global concurrency cap of ``queue``, or None when there is none."""
        self._ensure_open()
        return await self._get_global_concurrency(str(queue))

    # -- what QueueService provides ----------------------------------------------------

    @abc.abstractmethod
    def _ensure_open(self) -> None: ...

    @abc.abstractmethod
    def _now_ms(self) -> int: ...

    @abc.abstractmethod
    async def get_job(self, queue: str, job_id: str) -> JobInfo | None: ...

    # -- backend hooks -------------------------------------------------------------------

    @abc.abstractmethod
    async def _add_dedup(self, job: PreparedJob) -> tuple[str, bool]:
        """Add a job with deduplication: (the id returned, whether it was a duplicate)."""

    @abc.abstractmethod
    async def _get_dedup_job_id(self, queue: str, dedup_id: str) -> str | None:
        """The job id the deduplication id points at."""

    @abc.abstractmethod
    async def _set_paused(self, queue: str, paused: bool) -> None:
        """Pause or resume."""

    @abc.abstractmethod
    async def _is_paused(self, queue: str) -> bool:
        """Whether the queue is paused."""

    @abc.abstractmethod
    async def _remove_job(self, queue: str, job_id: str) -> bool:
        """Remove a job; raise JobActiveError when it is locked."""

    @abc.abstractmethod
    async def _clean(self, queue: str, state: str, grace_ms: int, limit: int) -> list[str]:
        """Remove old jobs of one state (limit 0: all)."""

    @abc.abstractmethod
    async def _drain(self, queue: str) -> None:
        """Remove waiting, prioritized and delayed jobs."""

    @abc.abstractmethod
    async def _obliterate(self, queue: str, force: bool) -> None:
        """Remove the queue; raise JobActiveError when jobs are active and not force."""

    @abc.abstractmethod
    async def _set_global_concurrency(self, queue: str, n: int | None) -> None:
        """Set (or, None, remove) the global concurrency."""

    @abc.abstractmethod
    async def _get_global_concurrency(self, queue: str) -> int | None:
        """The global concurrency, or None."""
