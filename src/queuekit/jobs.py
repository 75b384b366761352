"""Job states, results, read-back info and the context a processor receives.

The options of a job live in :mod:`queuekit.options` (also importable from here).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Generic, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from queuekit.blocking import BlockingJobMethods
from queuekit.errors import FieldError, PayloadValidationError, RateLimitedError
from queuekit.options import (
    MAX_PRIORITY,
    Deduplication,
    JobOptions,
    ResolvedOptions,
    Retention,
)
from queuekit.payloads import JobPayload

__all__ = [
    "COUNT_STATES",
    "MAX_PRIORITY",
    "Deduplication",
    "JobContext",
    "JobInfo",
    "JobOptions",
    "JobReporter",
    "JobResult",
    "JobState",
    "Progress",
    "ResolvedOptions",
    "Retention",
    "check_progress",
    "ms_to_datetime",
    "result_from_wire",
    "validate_model",
]

P = TypeVar("P", bound=JobPayload)
M = TypeVar("M", bound=BaseModel)

Progress = int | dict[str, Any]


class JobState(StrEnum):
    """Where a job is, in BullMQ's words."""

    WAITING = "waiting"
    PRIORITIZED = "prioritized"
    DELAYED = "delayed"
    ACTIVE = "active"
    COMPLETED = "completed"
    FAILED = "failed"
    WAITING_CHILDREN = "waiting-children"
    UNKNOWN = "unknown"

    @property
    def finished(self) -> bool:
        """True for completed and failed."""
        return self in (JobState.COMPLETED, JobState.FAILED)


#: The keys of ``get_job_counts``, in display order.
COUNT_STATES: tuple[str, ...] = (
    "waiting",
    "active",
    "delayed",
    "prioritized",
    "completed",
    "failed",
    "paused",
    "waiting-children",
)


def _field_errors(exc: ValidationError) -> list[FieldError]:
    return [
        FieldError(".".join(str(p) for p in err["loc"]) or "(root)", err["msg"])
        for err in exc.errors()
    ]


def validate_model(model: type[M], value: object, subject: str) -> M:
    """Validate ``value`` (a model or a mapping) as ``model``.

    Raises :class:`PayloadValidationError` naming each offending field.
    """
    if isinstance(value, model):
        return value
    if isinstance(value, BaseModel):
        raise PayloadValidationError(
            subject,
            [FieldError("(root)", f"expected {model.__name__}, got {type(value).__name__}")],
        )
    if not isinstance(value, Mapping):
        raise PayloadValidationError(
            subject,
            [FieldError("(root)", f"expected {model.__name__} or a mapping, got "
                                  f"{type(value).__name__}")],
        )
    try:  # a plain dict (a parsed payload) as it is: validation builds a new object
        return model.model_validate(value if type(value) is dict else dict(value))
    except ValidationError as exc:
        raise PayloadValidationError(subject, _field_errors(exc)) from exc


class JobResult(BaseModel):
    """What a processor returns (the NestJS ``JobResult``)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    success: bool
    message: str | None = None
    data: Any = None

    def to_wire(self) -> dict[str, Any]:
        """The JSON-ready dict stored as the job's return value."""
        return self.model_dump(mode="json", exclude_none=True)


def result_from_wire(value: Any) -> JobResult | Any:
    """A stored return value as a :class:`JobResult` when it has that shape."""
    if isinstance(value, Mapping) and isinstance(value.get("success"), bool):
        return JobResult.model_validate(dict(value))
    return value


def check_progress(progress: object) -> Progress:
    """Validate a progress value: an int 0..100 or a JSON-serialisable mapping."""
    if isinstance(progress, bool) or not isinstance(progress, int | Mapping):
        raise PayloadValidationError(
            "progress", [FieldError("progress", "must be an int 0..100 or a mapping")]
        )
    if isinstance(progress, int):
        if not 0 <= progress <= 100:
            raise PayloadValidationError(
                "progress", [FieldError("progress", f"must be within 0..100, got {progress}")]
            )
        return progress
    try:
        return dict(json.loads(json.dumps(dict(progress))))
    except (TypeError, ValueError) as exc:
        raise PayloadValidationError(
            "progress", [FieldError("progress", f"must be JSON-serialisable: {exc}")]
        ) from exc


def ms_to_datetime(value: int | float | None) -> dt.datetime | None:
    """A BullMQ millisecond timestamp as an aware UTC datetime (None for 0/None)."""
    global _last_datetime
    if not value:
        return None
    last = _last_datetime
    if last[0] == value:  # the jobs of one add_jobs call share their millisecond
        return last[1]
    found = dt.datetime.fromtimestamp(value / 1000, tz=dt.UTC)
    _last_datetime = (value, found)
    return found


_last_datetime: tuple[float, dt.datetime | None] = (0, None)


@dataclass(frozen=True)
class JobInfo:
    """A job as read back from its queue.

    ``data`` is the validated payload model when the stored data validates against the
    queue's model, else the raw dict. ``return_value`` is a :class:`JobResult` when the
    processor returned one.
    """

    id: str
    name: str
    queue: str
    data: Any
    state: JobState
    progress: Progress
    attempts_made: int
    return_value: Any
    failed_reason: str | None
    created_at: dt.datetime | None
    processed_at: dt.datetime | None
    finished_at: dt.datetime | None
    max_attempts: int = 1
    delay: int = 0
    priority: int = 0
    #: The stack traces of its failed attempts, oldest first (BullMQ's ``stacktrace``;
    #: read by ``get_job``, empty in lists).
    stacktrace: tuple[str, ...] = ()


class JobReporter(Protocol):
    """The backend side of a :class:`JobContext`: where progress and logs go."""

    async def update_progress(self, progress: Progress) -> None: ...

    async def log(self, text: str) -> None: ...


class JobContext(BlockingJobMethods, Generic[P]):
    """What a processor receives: the job's identity, its validated payload and its actions.

    ``await update_progress(50)`` (or a mapping) makes progress visible to ``get_job`` and
    event subscribers; ``await log("text")`` appends to the job's log. In a flow's parent,
    ``await get_children_values()`` returns its children's return values. ``cancelled``
    turns True once ``cancel_job`` or the job's ``timeout`` ended the attempt.
    """

    __slots__ = ("_children", "_reporter", "attempts_made", "cancelled", "data", "id",
                 "max_attempts", "name", "progress", "queue")

    def __init__(
        self,
        *,
        id: str,
        name: str,
        queue: str,
        data: P,
        attempts_made: int,
        max_attempts: int,
        reporter: JobReporter,
        progress: Progress = 0,
        children: Callable[[], Awaitable[dict[str, Any]]] | None = None,
    ) -> None:
        self.id = id
        self.name = name
        self.queue = queue
        self.data = data
        self.attempts_made = attempts_made
        self.max_attempts = max_attempts
        self.progress: Progress = progress
        self._reporter = reporter
        self._children = children
        #: Set by the worker when the attempt is cancelled or times out: a processor that
        #: cannot be interrupted (a thread) can poll it and stop early.
        self.cancelled = False

    async def update_progress(self, progress: int | Mapping[str, Any]) -> None:
        """Record progress: an int 0..100 or a JSON-serialisable mapping."""
        value = check_progress(progress)
        await self._reporter.update_progress(value)
        self.progress = value

    async def log(self, text: str) -> None:
        """Append a line to the job's log (BullMQ's ``job.log``)."""
        await self._reporter.log(str(text))

    async def rate_limit(self, delay_ms: int) -> None:
        """Throttle the queue for ``delay_ms`` and put this job back to waiting.

        For a processor that learns the downstream API is throttling (BullMQ's manual
        rate limit). Always raises :class:`RateLimitedError`: let it propagate. The job
        is not failed and its attempt is not counted.
        """
        if isinstance(delay_ms, bool) or not isinstance(delay_ms, int) or delay_ms <= 0:
            raise PayloadValidationError(
                "rate limit", [FieldError("delay_ms", f"must be an int > 0, got {delay_ms!r}")])
        raise RateLimitedError(delay_ms)
    async def get_children_values(self) -> dict[str, Any]:
        """The return values of this flow parent's completed children, by child job key
        (BullMQ's ``getChildrenValues``: ``"<prefix>:<queue>:<id>"``); empty for a job
        without children."""
        return {} if self._children is None else await self._children()

    def __repr__(self) -> str:
        return (f"JobContext(queue={self.queue!r}, id={self.id!r}, name={self.name!r}, "
                f"attempts_made={self.attempts_made})")
