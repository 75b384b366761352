"""Processors as injectable classes, the way NestJS's ``@Processor`` / ``WorkerHost`` works.

A class names its queue (and, optionally, its concurrency), takes its dependencies in its
constructor and implements :meth:`WorkerHost.process`; optional hooks run after each
attempt::

    @processor("notifications", concurrency=2)
    class NotificationProcessor(WorkerHost[NotificationJobData]):
        def __init__(self, sender: Sender) -> None:   # injected by name by the host
            self.sender = sender

        async def process(self, job: JobContext[NotificationJobData]) -> JobResult:
            await self.sender.send(job.data)
            return JobResult(success=True)

        async def on_failed(self, job: JobContext[NotificationJobData],
                            error: BaseException) -> None:
            ...

``qs.create_worker(queue, NotificationProcessor(sender))`` runs an instance directly; a
plugin lists the class and the host builds it. Plain async functions stay processors
(:class:`FunctionProcessor` names the queue of one for a plugin). A processor that is a
plain ``def`` (or a ``WorkerHost`` whose ``process`` is one) runs off the event loop, in
the queue's ``worker.sync_pool`` (:mod:`queuekit.offload`); it reports with
``job.update_progress_sync`` / ``job.log_sync``. :func:`observe` wraps
any processor with :class:`JobObserver` s (the worker's log lines, metrics) without
touching the backends.
"""

from __future__ import annotations

import abc
import functools
import inspect
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Protocol, TypeVar, cast

from queuekit.errors import ConfigurationError
from queuekit.jobs import JobContext, JobResult, Progress
from queuekit.offload import SyncPool, run_sync
from queuekit.payloads import JobPayload

log = logging.getLogger("queuekit.processors")

P = TypeVar("P", bound=JobPayload)
H = TypeVar("H", bound="WorkerHost[Any]")

#: What a processor may return.
ProcessorResult = JobResult | Mapping[str, Any] | None
#: A processor as the backends run it: an async function of a :class:`JobContext`.
Processor = Callable[[JobContext[Any]], Awaitable[ProcessorResult]]
#: The same type under its older name.
ProcessorFunc = Processor
#: A plain ``def`` processor: it runs off the event loop (``worker.sync_pool``).
SyncProcessor = Callable[[JobContext[Any]], ProcessorResult]
#: Either kind: what ``create_worker``, :class:`FunctionProcessor` and :func:`observe` take.
AnyProcessor = Processor | SyncProcessor


class WorkerHost(abc.ABC, Generic[P]):
    """Base class of a processor class: set ``queue`` (or use :func:`processor`) and
    implement :meth:`process`.

    ``concurrency`` is the default number of jobs at once; ``worker.queue_concurrency``
    in the configuration and ``queuekit worker --concurrency`` override it. The hooks are
    awaited after each attempt; an exception in a hook is logged and never changes the
    job's outcome.
    """

    queue: ClassVar[str]
    concurrency: ClassVar[int | None] = None

    @abc.abstractmethod
    def process(self, job: JobContext[P]) -> Awaitable[ProcessorResult] | ProcessorResult:
        """Process one job; raise to fail the attempt (``UnrecoverableError``: no retry).

        ``async def`` runs on the worker's event loop; a plain ``def`` runs in the queue's
        ``worker.sync_pool`` (threads, or processes), where CPU work costs no lock.
        """

    async def on_completed(self, job: JobContext[P], result: ProcessorResult) -> None:
        """Called after :meth:`process` returned ``result``."""

    async def on_failed(self, job: JobContext[P], error: BaseException) -> None:
        """Called after an attempt raised ``error``; the job is retried while
        ``job.attempts_made + 1 < job.max_attempts`` (unless it was unrecoverable)."""

    async def on_progress(self, job: JobContext[P], progress: Progress) -> None:
        """Called after :meth:`process` recorded ``progress``."""

    def as_processor(self) -> Processor:
        """This instance as a plain processor function (the same object every time)."""
        bound: Processor | None = self.__dict__.get("_queuekit_processor")
        if bound is None:
            bound = _HostProcessor(self)
            self.__dict__["_queuekit_processor"] = bound
        return bound


class _HookReporter:
    """Forwards to the original context, then calls ``on_progress``."""

    def __init__(self, host: WorkerHost[Any], job: JobContext[Any]) -> None:
        self._host = host
        self._job = job
        self.hooked: JobContext[Any] | None = None

    async def update_progress(self, progress: Progress) -> None:
        await self._job.update_progress(progress)
        if self.hooked is not None:
            self.hooked.progress = progress  # the hook sees the recorded value
            await _run_hook(self._host, "on_progress", self._host.on_progress(self.hooked,
                                                                                progress))

    async def log(self, text: str) -> None:
        await self._job.log(text)


class _HostProcessor:
    """Runs a :class:`WorkerHost` instance's ``process`` and its hooks."""

    def __init__(self, host: WorkerHost[Any]) -> None:
        self.host = host
        self._hooks_progress = type(host).on_progress is not WorkerHost.on_progress
        self.sync = not inspect.iscoroutinefunction(host.process)
        self.pool: SyncPool | None = None  # bound by create_worker for a plain-def process

    def __repr__(self) -> str:
        return f"<processor {type(self.host).__name__}>"

    async def __call__(self, job: JobContext[Any]) -> ProcessorResult:
        host = self.host
        if self._hooks_progress:
            reporter = _HookReporter(host, job)
            job = JobContext(id=job.id, name=job.name, queue=job.queue, data=job.data,
                             attempts_made=job.attempts_made, max_attempts=job.max_attempts,
                             reporter=reporter, progress=job.progress)
            reporter.hooked = job
        result: ProcessorResult
        try:
            if self.sync:
                result = await run_sync(host.process, job, self.pool)
            else:
                result = await cast(Awaitable[ProcessorResult], host.process(job))
        except Exception as exc:
            await _run_hook(host, "on_failed", host.on_failed(job, exc))
            raise
        await _run_hook(host, "on_completed", host.on_completed(job, result))
        return result


async def _run_hook(host: WorkerHost[Any], name: str, hook: Awaitable[None]) -> None:
    try:
        await hook
    except Exception:
        log.exception("%s.%s raised; the job's outcome is unchanged", type(host).__name__,
                      name)


def processor(queue: str, *, concurrency: int | None = None) -> Callable[[type[H]], type[H]]:
    """Class decorator naming the queue (and default concurrency) of a :class:`WorkerHost`.

    The counterpart of NestJS's ``@Processor('queue')``.
    """
    if concurrency is not None and concurrency < 1:
        raise ConfigurationError(f"@processor({queue!r}): concurrency must be >= 1, "
                                 f"got {concurrency}")

    def mark(cls: type[H]) -> type[H]:
        if not (isinstance(cls, type) and issubclass(cls, WorkerHost)):
            raise ConfigurationError(
                f"@processor({queue!r}) decorates WorkerHost subclasses, not {cls!r}; "
                "for a plain async function use FunctionProcessor(queue, function)"
            )
        cls.queue = str(queue)
        cls.concurrency = concurrency
        return cls

    return mark


@dataclass(frozen=True)
class FunctionProcessor:
    """A plain async function as a plugin's processor of ``queue``."""

    queue: str
    function: AnyProcessor
    concurrency: int | None = None


ProcessorSpec = type[WorkerHost[Any]] | FunctionProcessor


def queue_of(spec: ProcessorSpec) -> str:
    """The queue a processor class or :class:`FunctionProcessor` works on."""
    if isinstance(spec, FunctionProcessor):
        return str(spec.queue)
    if not (isinstance(spec, type) and issubclass(spec, WorkerHost)):
        raise ConfigurationError(
            f"{spec!r} is not a processor: list WorkerHost subclasses or "
            "FunctionProcessor(queue, function)"
        )
    queue = getattr(spec, "queue", None)
    if not isinstance(queue, str) or not queue:
        raise ConfigurationError(
            f"processor class {spec.__name__} names no queue: set `queue = \"...\"` on it "
            "or decorate it with @processor(\"...\")"
        )
    return queue


def concurrency_of(spec: ProcessorSpec) -> int | None:
    """The concurrency a processor declares, or None for the configured default."""
    return spec.concurrency


def name_of(spec: ProcessorSpec) -> str:
    """A readable name of a processor, for log lines and error messages."""
    if isinstance(spec, FunctionProcessor):
        return getattr(spec.function, "__qualname__", repr(spec.function))
    return spec.__qualname__


class JobObserver(Protocol):
    """Something told about each attempt a worker makes (log lines, metrics)."""

    def job_started(self, job: JobContext[Any]) -> None:
        """An attempt of ``job`` is starting (the job is active)."""

    def job_completed(self, job: JobContext[Any], duration: float) -> None:
        """The processor returned after ``duration`` seconds."""

    def job_failed(self, job: JobContext[Any], error: BaseException, duration: float) -> None:
        """The processor raised ``error`` after ``duration`` seconds."""


class SyncAdapter:
    """A plain-def processor as an async one: each call runs ``function`` in ``pool``
    (bound by ``create_worker``; None: a thread of the loop's default executor)."""

    def __init__(self, function: SyncProcessor) -> None:
        self.function = function
        self.pool: SyncPool | None = None

    def __repr__(self) -> str:
        return f"<sync processor {getattr(self.function, '__qualname__', self.function)!r}>"

    async def __call__(self, job: JobContext[Any]) -> ProcessorResult:
        result: ProcessorResult = await run_sync(self.function, job, self.pool)
        return result


def _is_async(function: object) -> bool:
    return inspect.iscoroutinefunction(function) or inspect.iscoroutinefunction(
        getattr(function, "__call__", None))  # noqa: B004 - an async __call__ method


def as_async(processor: AnyProcessor | WorkerHost[Any]) -> Processor:
    """Any processor as an async function: a ``WorkerHost`` instance as its processor, a
    plain ``def`` as a :class:`SyncAdapter`, an async one unchanged."""
    if isinstance(processor, WorkerHost):
        return processor.as_processor()
    if _is_async(processor):
        return cast(Processor, processor)
    return SyncAdapter(cast(SyncProcessor, processor))


def same_processor(running: Processor, given: AnyProcessor | WorkerHost[Any]) -> bool:
    """Whether a running worker's processor is ``given`` (before :func:`as_async`)."""
    adapted = as_async(given)
    if isinstance(running, SyncAdapter) and isinstance(adapted, SyncAdapter):
        return running.function is adapted.function
    return running is adapted


def bind_pool(processor: Processor, make: Callable[[], SyncPool]) -> SyncPool | None:
    """Give every off-loop part of ``processor`` (through :func:`observe` wrappers) a pool
    from ``make`` (called once, only when there is such a part); return that pool."""
    pool: SyncPool | None = None
    part: object = processor
    while part is not None:
        if isinstance(part, SyncAdapter) or (isinstance(part, _HostProcessor) and part.sync):
            pool = pool or make()
            part.pool = pool
        part = getattr(part, "__wrapped__", None)
    return pool


def observe(function: AnyProcessor, observers: Sequence[JobObserver]) -> Processor:
    """``function`` (made async by :func:`as_async`) with every observer told about each
    attempt, on the event loop.

    An observer that raises is logged and skipped: it never fails a job.
    """
    function = as_async(function)
    if not observers:
        return function

    def tell(call: Callable[[JobObserver], None]) -> None:
        for observer in observers:
            try:
                call(observer)
            except Exception:
                log.exception("job observer %r raised", observer)

    async def observed(job: JobContext[Any]) -> ProcessorResult:
        tell(lambda o: o.job_started(job))
        started = time.perf_counter()
        try:
            result = await function(job)
        except Exception as exc:
            error, duration = exc, time.perf_counter() - started
            tell(lambda o: o.job_failed(job, error, duration))
            raise
        duration = time.perf_counter() - started
        tell(lambda o: o.job_completed(job, duration))
        return result

    return functools.update_wrapper(observed, function, updated=())  # see bind_pool


class JobStateLogger:
    """Logs the ``active`` line of each attempt (queue and job id).

    Together with the backends' own lines (``completed``; ``failed``/``retrying`` with
    the attempt number; ``stalled``) a worker logs one line per state change, each after
    the change happened in the store.
    """

    def __init__(self, logger: logging.Logger | None = None) -> None:
        self.log = logger or logging.getLogger("queuekit.worker")

    def job_started(self, job: JobContext[Any]) -> None:
        """Log ``job <id> on <queue> active (attempt n of m)``."""
        self.log.info("job %s on %s active (attempt %d of %d)", job.id, job.queue,
                      job.attempts_made + 1, job.max_attempts,
                      extra={"queue": job.queue, "job_id": job.id})

    def job_completed(self, job: JobContext[Any], duration: float) -> None:
        """Nothing: the backend logs ``completed`` once the store has it."""

    def job_failed(self, job: JobContext[Any], error: BaseException, duration: float) -> None:
        """Nothing: the backend logs ``failed`` with whether the job is retried."""
