"""The records that pass between ``QueueService`` and its backends.

``NewJob`` is what a caller hands to ``add_jobs``; ``PreparedJob`` is a job that passed
every check and is ready to be written; ``RawJob`` is a job as a backend read it back,
before it becomes a public :class:`~queuekit.jobs.JobInfo`; ``HealthReport`` is what
``health()`` says. None of them carries a backend's wire format.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar, overload

from queuekit.errors import PayloadValidationError
from queuekit.jobs import (
    JobInfo,
    JobOptions,
    JobResult,
    JobState,
    Progress,
    ResolvedOptions,
    ms_to_datetime,
    result_from_wire,
    validate_model,
)
from queuekit.payloads import JobPayload
from queuekit.queues import QueueRegistry

JobData = JobPayload | Mapping[str, Any]
T = TypeVar("T")
_new = object.__new__


def _job_info(**fields: Any) -> JobInfo:
    """A ``JobInfo`` with every field set at once: a frozen dataclass's ``__init__`` sets
    each through ``object.__setattr__``, most of the cost of building one (tests check the
    result equals ``JobInfo(...)``)."""
    info: JobInfo = _new(JobInfo)
    info.__dict__.update(fields)
    return info


#: Adds left to finish on their own (see :func:`built_while`): a task needs a reference.
_finishing: set[asyncio.Future[Any]] = set()


def built_while(pending: Awaitable[Any], build: Callable[[], T]) -> T:
    """``build()``, the bookkeeping of an add done while ``pending`` (the add, already
    written) is in flight. Should it fail, ``pending``, which holds a connection until
    awaited, is left to finish in a task of its own."""
    try:
        return build()
    except BaseException:
        task = asyncio.ensure_future(pending)
        _finishing.add(task)
        task.add_done_callback(_finishing.discard)
        raise


def with_id(info: JobInfo, job_id: str) -> JobInfo:
    """``info`` (built by :meth:`PreparedJob.info` before its job's id was known, not yet
    handed to anyone) with its ``id`` set."""
    info.__dict__["id"] = job_id
    return info


OptionsArg = JobOptions | Mapping[str, Any] | None

#: The states :meth:`QueueService.get_jobs` lists.
LISTABLE_STATES: tuple[str, ...] = (
    JobState.WAITING, JobState.PRIORITIZED, JobState.DELAYED, JobState.ACTIVE,
    JobState.COMPLETED, JobState.FAILED,
)


@dataclass(frozen=True)
class NewJob:
    """One job of a bulk :meth:`QueueService.add_jobs` call."""

    name: str
    data: JobData
    options: OptionsArg = None


class _kept(Generic[T]):  # noqa: N801 - used as a decorator, as cached_property
    """``functools.cached_property`` without its lock (Python 3.11 takes an ``RLock`` on
    every first read, a third of the cost of serialising a small payload): the value is
    made on first read and kept in the instance's ``__dict__``, which later reads find
    first. Two threads reading at once may both make it; either value is the same."""

    def __init__(self, make: Callable[[Any], T]) -> None:
        self._make = make
        self._name = make.__name__
        self.__doc__ = make.__doc__

    @overload
    def __get__(self, instance: None, owner: type[Any]) -> _kept[T]: ...
    @overload
    def __get__(self, instance: object, owner: type[Any]) -> T: ...

    def __get__(self, instance: object | None, owner: type[Any]) -> _kept[T] | T:
        if instance is None:
            return self
        value = instance.__dict__[self._name] = self._make(instance)
        return value


@dataclass(frozen=True)
class PreparedJob:
    """A job that passed every check and is ready to be written."""

    queue: str
    name: str
    payload: JobPayload
    options: ResolvedOptions
    #: BullMQ's ``tm``: the trace context of the add (``queuekit.tracing``), or None.
    trace_metadata: str | None = None

    @classmethod
    def checked(cls, queue: str, name: str, payload: JobPayload,
                options: ResolvedOptions) -> PreparedJob:
        """``PreparedJob(queue, name, payload, options)`` with its :attr:`data_json` made
        now (a payload that cannot be serialised fails here, before anything is written),
        every field set at once as :func:`_job_info` does."""
        job: PreparedJob = _new(cls)
        job.__dict__.update(queue=queue, name=name, payload=payload, options=options,
                            trace_metadata=None, data_json=payload.wire_json())
        return job

    @_kept
    def wire(self) -> dict[str, Any]:
        """The payload's camelCase dict (:meth:`JobPayload.to_wire`), made on first use."""
        return self.payload.to_wire()

    @_kept
    def data_json(self) -> bytes:
        """The payload's camelCase JSON as it is stored (:meth:`JobPayload.wire_json`)."""
        return self.payload.wire_json()

    def info(self, job_id: str, created_ms: int) -> JobInfo:
        """The ``JobInfo`` of this job just after it was written as ``job_id``."""
        delay, priority = self.options.delay, self.options.priority
        state = (JobState.DELAYED if delay else
                 JobState.PRIORITIZED if priority else JobState.WAITING)
        return _job_info(
            id=job_id, name=self.name, queue=self.queue, data=self.payload, state=state,
            progress=0, attempts_made=0, return_value=None, failed_reason=None,
            created_at=ms_to_datetime(created_ms), processed_at=None, finished_at=None,
            max_attempts=self.options.attempts, delay=delay, priority=priority,
            stacktrace=(),
        )


@dataclass
class RawJob:
    """A job as a backend stores it, before it becomes a ``JobInfo``."""

    id: str
    name: str
    data: Any
    state: str
    max_attempts: int = 1
    progress: Progress = 0
    attempts_made: int = 0
    return_value: Any = None
    failed_reason: str | None = None
    timestamp: int = 0
    processed_on: int = 0
    finished_on: int = 0
    delay: int = 0
    priority: int = 0
    timeout: int = 0
    trace_metadata: str | None = None
    #: Read by ``get_job`` only (a worker's job never needs it).
    stacktrace: tuple[str, ...] = ()

    def to_info(self, queue: str, registry: QueueRegistry) -> JobInfo:
        """The public view: ``data`` validated when it fits the queue's model."""
        data: Any = self.data
        if queue in registry:
            try:
                data = validate_model(registry.model_for(queue), self.data, "payload")
            except PayloadValidationError:
                data = self.data
        try:
            state = JobState(self.state)
        except ValueError:
            state = JobState.UNKNOWN
        return _job_info(
            id=self.id, name=self.name, queue=queue, data=data, state=state,
            progress=self.progress, attempts_made=self.attempts_made,
            return_value=result_from_wire(self.return_value),
            failed_reason=self.failed_reason, created_at=ms_to_datetime(self.timestamp),
            processed_at=ms_to_datetime(self.processed_on),
            finished_at=ms_to_datetime(self.finished_on),
            max_attempts=self.max_attempts, delay=self.delay, priority=self.priority,
            stacktrace=self.stacktrace,
        )


@dataclass(frozen=True)
class HealthReport:
    """What ``QueueService.health()`` says; ``ok`` is False with ``reasons`` when not."""

    ok: bool
    backend: str
    redis: str
    breaker: str
    workers: dict[str, bool] = field(default_factory=dict)
    reasons: tuple[str, ...] = ()


def normalise_result(result: object) -> Any:
    """A processor's return value as the JSON-ready value stored on the job."""
    if result is None:
        return None
    if isinstance(result, JobResult):
        return result.to_wire()
    if isinstance(result, Mapping):
        return dict(result)
    raise TypeError(
        f"a processor must return JobResult, a mapping or None, not {type(result).__name__}"
    )
