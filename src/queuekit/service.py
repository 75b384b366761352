"""The ``QueueService`` contract, shared by the Redis and the in-memory implementations.

Public methods validate and log; the backends implement small private hooks
(``_start_add``, ``_start_add_bulk``, ``_start_worker``, ``_get_raw_job``, ``_get_counts`` ...).
"""

from __future__ import annotations

import abc
import asyncio
import logging
import time
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any, ClassVar

from queuekit.cancellation import CancellationMixin
from queuekit.controls import ControlsMixin
from queuekit.errors import (
    FieldError,
    PayloadValidationError,
    ServiceClosedError,
    WorkerError,
)
from queuekit.events import EventStream
from queuekit.flows import FlowsMixin
from queuekit.jobs import JobInfo, JobOptions, JobState, validate_model
from queuekit.offload import SyncPool, make_pool
from queuekit.processors import (
    AnyProcessor,
    Processor,
    WorkerHost,
    as_async,
    bind_pool,
    same_processor,
)
from queuekit.queues import QueueRegistry
from queuekit.ratelimit import RateLimiter
from queuekit.records import (
    LISTABLE_STATES,
    HealthReport,
    JobData,
    NewJob,
    OptionsArg,
    PreparedJob,
    RawJob,
    built_while,
    with_id,
)
from queuekit.schedules import SchedulesMixin
from queuekit.security import SensitiveKeyPolicy
from queuekit.settings import QueuekitSettings, load_settings
from queuekit.tracing import traced_add, traced_add_bulk, tracer
from queuekit.waiting import JobWaitMixin
from queuekit.worker import QueueWorker

log = logging.getLogger("queuekit")


class QueueService(FlowsMixin, CancellationMixin, ControlsMixin, JobWaitMixin, SchedulesMixin,
                   abc.ABC):
    """Named queues of background jobs: add jobs, run workers, read jobs back.

    Inject this type; the container provides the Redis implementation, and tests can
    override it with :class:`queuekit.testing.InMemoryQueueService`.
    """

    backend: ClassVar[str] = "abstract"

    def __init__(
        self,
        settings: QueuekitSettings | None = None,
        registry: QueueRegistry | None = None,
    ) -> None:
        self.settings = settings if settings is not None else load_settings()
        self.registry = registry if registry is not None else QueueRegistry()
        self._sensitive = SensitiveKeyPolicy(self.settings.security.sensitive_keys)
        self._workers: dict[str, QueueWorker] = {}
        self._sync_pools: list[SyncPool] = []
        self._closed = False
        self._close_task: asyncio.Task[None] | None = None
        self._rate_limiter: RateLimiter | None = None
        self._default_options = JobOptions().resolve(self.settings.jobs)
        self._tracer = tracer()  # None unless an OpenTelemetry provider is configured

    # -- adding jobs -------------------------------------------------------------

    def prepare_job(self, queue: str, name: str, data: JobData,
                    options: OptionsArg = None) -> PreparedJob:
        """Validate a job without writing it: payload, secrets, options and name."""
        queue = str(queue)
        model = self.registry.model_for(queue)
        subject = f"payload for queue {queue!r}"
        payload = validate_model(model, data, subject)
        self._sensitive.check_payload(model, payload, subject)
        if not isinstance(name, str) or not name.strip():
            raise PayloadValidationError(
                "job", [FieldError("name", "must be a non-empty string")]
            )
        if options is None:  # the common case: the configured defaults, resolved once
            resolved = self._default_options
        else:
            resolved = validate_model(JobOptions, options, "job options").resolve(
                self.settings.jobs)
        # Serialised now: a failure is the caller's, before anything is written.
        return PreparedJob.checked(queue, name, payload, resolved)

    async def add_job(self, queue: str, name: str, data: JobData,
                      options: OptionsArg = None) -> JobInfo:
        """Validate ``data`` and ``options``, then put one job on ``queue``.

        Nothing is written when validation fails. Returns the new job (its ``id`` is set).
        """
        self._ensure_open()
        job = self.prepare_job(queue, name, data, options)
        if self.settings.security.rate_limits:
            await self._admit([job])
        if job.options.deduplication is not None:  # the existing job when a duplicate
            return await self._add_deduplicated_job(job)
        now = self._now_ms()  # the job's timestamp, in the store and in its record
        if self._tracer is not None:
            job_id = await traced_add(self._tracer, job, lambda j: self._start_add(j, now))
            return job.info(job_id, now)
        # The write goes out first; the job's record is built while the store runs it.
        pending = self._start_add(job, now)
        info = built_while(pending, lambda: job.info("", now))
        job_id = await pending
        if log.isEnabledFor(logging.DEBUG):
            log.debug("job %s added to %s", job_id, job.queue,
                      extra={"queue": job.queue, "job_id": job_id})
        return with_id(info, job_id)

    async def add_jobs(
        self, queue: str, jobs: Sequence[NewJob | tuple[str, JobData] | tuple[str, JobData,
                                                                               OptionsArg]],
    ) -> list[JobInfo]:
        """Add several jobs to ``queue`` in one round trip; all are validated first."""
        self._ensure_open()
        prepared: list[PreparedJob] = []
        for index, item in enumerate(jobs):
            spec = item if isinstance(item, NewJob) else NewJob(*item)
            try:
                prepared.append(self.prepare_job(queue, spec.name, spec.data, spec.options))
            except PayloadValidationError as exc:
                errors = [FieldError(f"jobs[{index}].{e.field}", e.message) for e in exc.errors]
                raise type(exc)(exc.subject, errors) from exc
        if not prepared:
            return []
        await self._admit(prepared)
        if any(job.options.deduplication is not None for job in prepared):
            # Each may answer with an existing job: one add (and round trip) per job.
            return [await self._add_deduplicated_job(job) if job.options.deduplication
                    else await self._add_recorded(job) for job in prepared]
        now = self._now_ms()
        if self._tracer is not None:
            ids = await traced_add_bulk(self._tracer, prepared,
                                        lambda jobs: self._start_add_bulk(jobs, now))
            return [job.info(job_id, now) for job, job_id in zip(prepared, ids, strict=True)]
        # As add_job: the records are built while the store runs the write.
        pending = self._start_add_bulk(prepared, now)
        infos = built_while(pending, lambda: [job.info("", now) for job in prepared])
        ids = await pending
        log.debug("%d jobs added to %s", len(ids), queue, extra={"queue": str(queue)})
        return [with_id(info, job_id) for info, job_id in zip(infos, ids, strict=True)]

    async def _add_recorded(self, job: PreparedJob) -> JobInfo:
        now = self._now_ms()
        return job.info(await self._start_add(job, now), now)

    async def _admit(self, jobs: Sequence[PreparedJob]) -> None:
        """Refuse jobs beyond their queue's per-user rate limit, before anything is written."""
        if not self.settings.security.rate_limits:
            return
        if self._rate_limiter is None:
            self._rate_limiter = self._make_rate_limiter()
        await self._rate_limiter.admit(jobs[0].queue, [job.payload for job in jobs])

    # -- events ------------------------------------------------------------------

    def events(self, queue: str) -> EventStream:
        """Subscribe to ``queue``'s job events (progress, completed, failed, retrying,
        stalled ...): ``async with qs.events(queue) as events: async for e in events``."""
        self._ensure_open()
        return self._event_stream(str(queue))

    # -- workers -----------------------------------------------------------------

    def create_worker(self, queue: str, processor: AnyProcessor | WorkerHost[Any], *,
                      concurrency: int | None = None) -> QueueWorker:
        """Start a worker on ``queue`` that runs ``processor`` for each job.

        ``processor`` is a function or a :class:`~queuekit.processors.WorkerHost`
        instance (its hooks run too); a plain ``def`` runs off the event loop, in the
        queue's ``worker.sync_pool``. Must be called inside the running event loop. One
        worker per queue: calling it again with the same processor returns the running
        worker.
        """
        self._ensure_open()
        queue = str(queue)
        given, processor = processor, as_async(processor)
        self.registry.model_for(queue)
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            raise WorkerError(
                f"create_worker({queue!r}) must be called inside the running event loop"
            ) from None
        existing = self._workers.get(queue)
        if existing is not None and existing.running:
            if same_processor(existing.processor, given):
                return existing
            raise WorkerError(
                f"queue {queue!r} already has a worker with another processor; close it first"
            )
        if concurrency is None:
            concurrency = self.settings.worker.concurrency_for(queue)
        if concurrency < 1:
            raise WorkerError(f"concurrency must be >= 1, got {concurrency}")
        pool = bind_pool(processor, lambda: make_pool(
            self.settings.worker.sync_pool_for(queue), queue, concurrency))
        self._sync_pools.extend([pool] if pool is not None else [])
        worker = self._start_worker(queue, processor, concurrency)
        self._workers[queue] = worker
        log.info("worker for %s started (concurrency %d)", queue, concurrency,
                 extra={"queue": queue})
        return worker

    @property
    def workers(self) -> Mapping[str, QueueWorker]:
        """The workers this service started, by queue."""
        return dict(self._workers)

    # -- reading back --------------------------------------------------------------

    async def get_job(self, queue: str, job_id: str) -> JobInfo | None:
        """The job ``job_id`` of ``queue``, or None when there is none."""
        self._ensure_open()
        raw = await self._get_raw_job(str(queue), str(job_id))
        return None if raw is None else raw.to_info(str(queue), self.registry)

    async def get_job_counts(self, queue: str) -> dict[str, int]:
        """Jobs per state: waiting, active, delayed, prioritized, completed, failed, paused,
        waiting-children."""
        self._ensure_open()
        return await self._get_counts(str(queue))

    async def get_jobs(self, queue: str, state: str = JobState.FAILED,
                       limit: int = 20) -> list[JobInfo]:
        """Up to ``limit`` jobs of ``queue`` in ``state`` (one of :data:`LISTABLE_STATES`).

        Completed and failed jobs come newest first; waiting, prioritized, delayed and
        active ones in the order they run.
        """
        self._ensure_open()
        queue, state = str(queue), str(state)
        if state not in LISTABLE_STATES:
            raise PayloadValidationError("job state", [FieldError(
                "state", f"must be one of {', '.join(LISTABLE_STATES)}, got {state!r}")])
        if limit < 1:
            raise PayloadValidationError("job list", [FieldError(
                "limit", f"must be >= 1, got {limit}")])
        raws = await self._get_raw_jobs(queue, state, limit)
        return [raw.to_info(queue, self.registry) for raw in raws[:limit]]

    async def retry_jobs(self, queue: str) -> int:
        """Move every failed job of ``queue`` back to waiting; return how many moved.

        As BullMQ's ``retryJobs``: the failed reason and timestamps are cleared, attempts
        made are kept (a job that fails again is not retried with backoff).
        """
        self._ensure_open()
        moved = await self._retry_failed(str(queue))
        log.info("%d failed job(s) of %s moved back to waiting", moved, queue,
                 extra={"queue": str(queue)})
        return moved

    async def list_queues(self) -> list[str]:
        """Every queue known here: the registered ones and any with jobs in the store."""
        self._ensure_open()
        return sorted(set(self.registry) | await self._stored_queues())

    async def count_workers(self, queue: str) -> int:
        """Workers connected to ``queue`` in any process: on Redis the distinct names of
        BullMQ's named worker connections (workers that share a name count once); in
        memory this service's running worker."""
        self._ensure_open()
        return await self._count_workers(str(queue))

    # -- health and lifecycle ----------------------------------------------------------

    async def health(self) -> HealthReport:
        """Is the store reachable, the breaker closed and every worker running?"""
        redis_status, breaker = await self._health_backend()
        workers = {name: w.running for name, w in self._workers.items()}
        reasons = []
        if redis_status != "ok":
            reasons.append(f"redis: {redis_status}")
        if breaker != "closed":
            reasons.append(f"circuit breaker is {breaker}")
        reasons.extend(f"worker for {name} is not running"
                       for name, running in workers.items() if not running)
        if self._closed:
            reasons.append("service is closed")
        return HealthReport(ok=not reasons, backend=self.backend, redis=redis_status,
                            breaker=breaker, workers=workers, reasons=tuple(reasons))

    @property
    def closed(self) -> bool:
        """True once ``close()`` has been called."""
        return self._closed

    async def close(self) -> None:
        """Close gracefully: workers first (each waits for its active jobs up to
        ``worker.shutdown_timeout``), then queues, then connections. Idempotent."""
        if self._close_task is None:
            self._closed = True
            self._close_task = asyncio.ensure_future(self._close())
        await asyncio.shield(self._close_task)

    async def _close(self) -> None:
        timeout = self.settings.worker.shutdown_timeout
        workers = list(self._workers.values())
        await asyncio.gather(*(w.close(timeout) for w in workers))
        for pool in self._sync_pools:
            pool.close()
        log.info("%d worker(s) closed", len(workers))
        await self._close_backend()
        log.info("queue service closed (%s)", self.backend)

    def _ensure_open(self) -> None:
        if self._closed:
            raise ServiceClosedError("the queue service is closed; create a new one")

    # -- backend hooks -----------------------------------------------------------------

    async def start(self) -> None:
        """Check that the store is reachable (Redis: within ``redis.startup_timeout``)."""

    def _now_ms(self) -> int:
        return int(time.time() * 1000)

    @abc.abstractmethod
    def _start_add(self, job: PreparedJob, created_ms: int) -> Awaitable[str]:
        """Write one validated job, created at ``created_ms``, sent now where the backend
        can (Redis): the awaitable of its id, which must be awaited."""

    @abc.abstractmethod
    def _start_add_bulk(self, jobs: Sequence[PreparedJob],
                        created_ms: int) -> Awaitable[list[str]]:
        """Write validated jobs of one queue at once, as :meth:`_start_add`: the awaitable
        of their ids in order."""

    @abc.abstractmethod
    def _start_worker(self, queue: str, processor: Processor,
                      concurrency: int) -> QueueWorker:
        """Create and start a worker."""

    @abc.abstractmethod
    async def _get_raw_job(self, queue: str, job_id: str) -> RawJob | None:
        """Read one job."""

    @abc.abstractmethod
    async def _get_counts(self, queue: str) -> dict[str, int]:
        """Count jobs per state."""

    @abc.abstractmethod
    async def _get_raw_jobs(self, queue: str, state: str, limit: int) -> list[RawJob]:
        """Up to ``limit`` jobs in ``state``, in the order of :meth:`get_jobs`."""

    @abc.abstractmethod
    async def _retry_failed(self, queue: str) -> int:
        """Move failed jobs back to waiting; return how many moved."""

    @abc.abstractmethod
    async def _stored_queues(self) -> set[str]:
        """Names of the queues that have keys (or jobs) in the store."""

    @abc.abstractmethod
    async def _count_workers(self, queue: str) -> int:
        """Workers connected to ``queue``."""

    @abc.abstractmethod
    async def _health_backend(self) -> tuple[str, str]:
        """(store status, breaker state)."""

    @abc.abstractmethod
    def _make_rate_limiter(self) -> RateLimiter:
        """The backend's per-user rate limiter for ``security.rate_limits``."""

    @abc.abstractmethod
    def _event_stream(self, queue: str) -> EventStream:
        """A new, unopened event stream of ``queue``."""

    @abc.abstractmethod
    async def _close_backend(self) -> None:
        """Release queues and connections (workers are closed already)."""
