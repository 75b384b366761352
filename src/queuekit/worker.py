"""Workers: the public :class:`QueueWorker` and the one template every backend fills in.

:class:`BaseWorker` owns what every worker does the same way: ``concurrency`` slots, the
fetch loop, running one job (the payload validated into a :class:`JobContext`, the
processor, its result normalised), the failure and completion log lines, and closing
with a deadline (stop fetching, wait for active jobs, cancel the rest). A backend
implements only the store's side: :meth:`BaseWorker._fetch`, :meth:`~BaseWorker._complete`,
:meth:`~BaseWorker._fail` and :meth:`~BaseWorker._abandon` (plus, on Redis, lock renewal
and the stalled check it starts in :meth:`~BaseWorker._open`).
"""

from __future__ import annotations

import abc
import asyncio
import logging
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from queuekit.cancellation import CancelRegistry
from queuekit.errors import PayloadValidationError, RateLimitedError, UnrecoverableError
from queuekit.jobs import JobContext, JobReporter, validate_model
from queuekit.processors import Processor
from queuekit.records import RawJob, normalise_result
from queuekit.tracing import consume, tracer

if TYPE_CHECKING:
    from queuekit.service import QueueService

log = logging.getLogger("queuekit.worker")

J = TypeVar("J")


class QueueWorker(abc.ABC):
    """A running worker of one queue (``QueueService.create_worker`` returns it)."""

    def __init__(self, queue: str, processor: Processor, concurrency: int) -> None:
        self.queue = queue
        self.processor = processor
        self.concurrency = concurrency

    @property
    @abc.abstractmethod
    def running(self) -> bool:
        """True until the worker has been closed (or has crashed)."""

    @abc.abstractmethod
    async def close(self, timeout: float | None = None) -> None:
        """Stop taking jobs, wait for active ones up to ``timeout`` seconds, then force."""


@dataclass(frozen=True)
class Failure:
    """What the store did with a failed attempt: for the one log line per attempt."""

    attempt: int
    max_attempts: int
    will_retry: bool
    retry_in_ms: int | None = None


def is_final(error: BaseException) -> bool:
    """Whether ``error`` fails a job without further attempts."""
    return isinstance(error, UnrecoverableError | PayloadValidationError)


class BaseWorker(QueueWorker, Generic[J]):
    """The worker template; ``J`` is the backend's job handle."""

    def __init__(self, service: QueueService, queue: str, processor: Processor,
                 concurrency: int) -> None:
        super().__init__(queue, processor, concurrency)
        self.service = service
        self._model = service.registry.model_for(queue)
        self._slots = asyncio.Semaphore(concurrency)
        self._work: set[asyncio.Task[Any]] = set()
        self._closing = False
        self._closed = False
        self._extra = {"queue": queue}
        self._cancels = CancelRegistry()
        self._tracer = tracer()  # checked once: None when tracing is off
        self._task: asyncio.Task[None] = asyncio.ensure_future(self._main())

    @property
    def running(self) -> bool:
        return not self._closed and not self._task.done()

    @property
    def active_jobs(self) -> int:
        """Jobs being processed right now."""
        return len(self._work)

    # -- the loop ----------------------------------------------------------------------

    async def _main(self) -> None:
        try:
            await self._open()
            await self._serve()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("worker for %s stopped", self.queue, extra=self._extra)

    async def _serve(self) -> None:
        """Fill free slots with fetched jobs until closing (an engine may run its own)."""
        while not self._closing:
            await self._slots.acquire()
            job = await self._fetch() if not self._closing else None
            if job is None:
                self._slots.release()
                continue
            self._spawn(self._run_slot(job))

    def _spawn(self, work: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(work)
        self._work.add(task)
        task.add_done_callback(self._work.discard)
        return task

    async def _run_slot(self, job: J) -> None:
        try:
            next_job: J | None = job
            while next_job is not None:
                next_job = await self._run_one(next_job)
        finally:
            self._slots.release()

    async def _run_one(self, job: J) -> J | None:
        """Run one job to its outcome in the store; return the next job, if the store
        handed one over with the completion."""
        try:
            value = await self._attempt(job)
        except asyncio.CancelledError:
            await self._abandon(job)
            raise
        except RateLimitedError as exc:
            await self._rate_limited(job, exc.delay_ms)
            self._log_rate_limited(self._raw(job).id, exc.delay_ms)
            return None
        except Exception as exc:
            failure = await self._fail(job, exc, is_final(exc))
            if failure is not None:
                self._log_failure(self._raw(job).id, failure, exc)
            return None
        return await self._complete(job, value)

    async def _attempt(self, job: J) -> Any:
        """Run the processor on ``job``; return the value to store.

        A payload that fails validation raises :class:`PayloadValidationError` (logged
        here), a refusal of the store :class:`UnrecoverableError`: both are final.
        """
        raw = self._raw(job)
        refusal = self._refusal(job)
        if refusal is not None:
            raise UnrecoverableError(refusal)
        try:
            payload = validate_model(self._model, raw.data,
                                     f"payload of job {raw.id} on queue {self.queue!r}")
        except PayloadValidationError as exc:
            log.error("job %s on %s rejected: %s", raw.id, self.queue, exc,
                      extra={"queue": self.queue, "job_id": raw.id})
            raise
        context: JobContext[Any] = JobContext(
            id=raw.id, name=raw.name, queue=self.queue, data=payload,
            attempts_made=raw.attempts_made, max_attempts=raw.max_attempts,
            reporter=self._reporter(job), progress=raw.progress,
            children=lambda: self._children_values(job),
        )
        with consume(self._tracer, self.queue, raw):  # the attempt's span, if tracing
            return normalise_result(await self._guarded(raw, context))

    async def _guarded(self, raw: RawJob, context: JobContext[Any]) -> Any:
        """The processor under the attempt's ``timeout`` and ``cancel_job`` requests: an
        interrupted attempt raises ``AttemptTimeoutError`` or ``JobCancelledError``."""
        guard = self._cancels.start(raw.id, context, raw.timeout)
        task = guard.task  # this task (asyncio.current_task() costs a getpid(2) each)
        try:
            if guard.reason is not None:  # cancelled before it started
                raise guard.error()
            result = await self.processor(context)
        except asyncio.CancelledError:
            if guard.reason is None:  # a forced close, not ours
                raise
            if task is not None:
                task.uncancel()
            raise guard.error() from None
        finally:
            self._cancels.finish(raw.id, guard)
        if guard.reason is not None:  # it swallowed the CancelledError or polled cancelled
            if task is not None and task.cancelling():
                task.uncancel()
            raise guard.error()
        return result

    def cancel_running(self, job_id: str, remember: bool = True) -> bool:
        """Interrupt the attempt of ``job_id`` if this worker runs it (else remember the
        request briefly: the job may be starting); True if one was interrupted."""
        return self._cancels.request(job_id, remember)

    # -- log lines -----------------------------------------------------------------------

    def _log_completed(self, job_id: str) -> None:
        if log.isEnabledFor(logging.INFO):
            log.info("job %s on %s completed", job_id, self.queue,
                     extra={"queue": self.queue, "job_id": job_id})

    def _log_rate_limited(self, job_id: str, delay_ms: int) -> None:
        log.info("job %s on %s back to waiting: queue rate limited for %d ms", job_id,
                 self.queue, delay_ms, extra={"queue": self.queue, "job_id": job_id})

    def _log_failure(self, job_id: str, failure: Failure, error: BaseException) -> None:
        """One line per failed attempt: a warning while it will be retried, else an error."""
        extra = {"queue": self.queue, "job_id": job_id}
        if failure.will_retry and failure.retry_in_ms is not None:
            log.warning("job %s on %s failed (attempt %d of %d), retrying in %d ms: %s",
                        job_id, self.queue, failure.attempt, failure.max_attempts,
                        failure.retry_in_ms, error, extra=extra)
            return
        log.log(logging.WARNING if failure.will_retry else logging.ERROR,
                "job %s on %s failed (attempt %d of %d): %s", job_id, self.queue,
                failure.attempt, failure.max_attempts, error, extra=extra)

    # -- shutdown ------------------------------------------------------------------------

    async def close(self, timeout: float | None = None) -> None:
        if self._closed:
            return
        self._closing = True
        # The deadline applies to the jobs: stop fetching now (the loop may be waiting
        # for a free slot, or blocked on the store).
        await self._stop_fetching()
        forced = False
        work = set(self._work)
        if work:
            _, pending = await asyncio.wait(work, timeout=timeout)
            if pending:
                forced = True
                log.warning("worker for %s: %d job(s) still active after %s s; forcing "
                            "close (%s)", self.queue, len(pending), timeout,
                            self._forced_close_note, extra=self._extra)
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
        await self._release(forced)
        self._closed = True
        log.info("worker for %s closed", self.queue, extra=self._extra)

    #: What happens to the jobs a forced close interrupts (for the warning).
    _forced_close_note = "their jobs are run again"

    async def _stop_fetching(self) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    # -- backend hooks -------------------------------------------------------------------

    async def _open(self) -> None:
        """Prepare before the first fetch (check the store, start background duties)."""

    @abc.abstractmethod
    async def _fetch(self) -> J | None:
        """The next job for a free slot (waiting as long as it takes); None when closing."""

    @abc.abstractmethod
    def _raw(self, job: J) -> RawJob:
        """What the processor's context is built from."""

    @abc.abstractmethod
    def _reporter(self, job: J) -> JobReporter:
        """Where the job's progress and log lines go."""

    async def _children_values(self, job: J) -> dict[str, Any]:
        """A flow parent's children's return values by child job key."""
        return {}

    def _refusal(self, job: J) -> str | None:
        """A reason the store gave to fail ``job`` without running it, or None."""
        return None

    @abc.abstractmethod
    async def _complete(self, job: J, value: Any) -> J | None:
        """Record the job's return value (and log it); return the next job if fetched."""

    @abc.abstractmethod
    async def _fail(self, job: J, error: BaseException, final: bool) -> Failure | None:
        """Record a failed attempt (retry or fail for good); None if it could not be."""

    @abc.abstractmethod
    async def _rate_limited(self, job: J, delay_ms: int) -> None:
        """The processor raised RateLimitedError: throttle the queue for ``delay_ms`` and
        put ``job`` back to waiting without counting the attempt."""

    @abc.abstractmethod
    async def _abandon(self, job: J) -> None:
        """A forced close interrupted ``job``: leave it to be run again."""

    async def _release(self, forced: bool) -> None:
        """Release what the worker holds, after its jobs ended."""
