"""Job options, results, read-back info and the context a processor receives."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Generic, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

from queuekit.blocking import BlockingJobMethods
from queuekit.errors import FieldError, PayloadValidationError, RateLimitedError
from queuekit.payloads import JobPayload
from queuekit.settings import BackoffSettings, JobDefaults, KeepJobs

P = TypeVar("P", bound=JobPayload)
M = TypeVar("M", bound=BaseModel)

#: BullMQ's highest priority number (2^21); 1 is the most urgent, 0 means none.
MAX_PRIORITY = 2_097_152

Progress = int | dict[str, Any]
Retention = bool | int | KeepJobs


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
    try:
        return model.model_validate(dict(value))
    except ValidationError as exc:
        raise PayloadValidationError(subject, _field_errors(exc)) from exc


class Deduplication(BaseModel):
    """BullMQ's ``deduplication`` option: at most one job per ``id`` at a time.

    Simple (no ``ttl``): duplicates are dropped until the job completes or fails.
    Throttle (``ttl`` ms): dropped for ``ttl`` ms after the first add. Debounce (``ttl``,
    ``extend=True``, ``replace=True``, with a ``delay``): each add restarts the window and
    replaces the still-delayed job, so the last payload wins. A dropped add returns the
    existing job and emits a ``deduplicated`` event.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(min_length=1, max_length=512, description="What makes jobs duplicates.")
    ttl: int | None = Field(default=None, gt=0, description="Window in ms (None: until done).")
    extend: bool = Field(default=False, description="A duplicate restarts the ttl window.")
    replace: bool = Field(default=False, description="A duplicate replaces a delayed job.")

    def __init__(self, id: str | None = None, **fields: Any) -> None:
        # Deduplication("sync-a1", ttl=...) as well as Deduplication(id="sync-a1", ...).
        if id is not None:
            fields["id"] = id
        super().__init__(**fields)

    @field_validator("id")
    @classmethod
    def _id_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("a deduplication id must not be blank")
        return value


class JobOptions(BaseModel):
    """Options of one job, in BullMQ's units (milliseconds). Unset fields take the defaults.

    Accepts snake_case or BullMQ's camelCase names (``job_id`` or ``jobId``).
    """

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )

    attempts: int | None = Field(default=None, ge=1, description="Attempts before failing.")
    backoff: BackoffSettings | int | None = Field(
        default=None, description="Retry delay; an int is a fixed delay in ms."
    )
    delay: int | None = Field(default=None, ge=0, description="Milliseconds before it may run.")
    priority: int | None = Field(
        default=None, ge=0, le=MAX_PRIORITY, description="1 is most urgent; 0 or None: none."
    )
    job_id: str | None = Field(
        default=None, min_length=1, max_length=512,
        description="Custom id; adding the same id twice is a no-op."
    )
    lifo: bool | None = Field(default=None, description="Take it before older waiting jobs.")
    remove_on_complete: Retention | None = Field(
        default=None, description="True, a count to keep, or KeepJobs(count, age)."
    )
    remove_on_fail: Retention | None = Field(
        default=None, description="True, a count to keep, or KeepJobs(count, age)."
    )
    deduplication: Deduplication | None = Field(
        default=None, description="Drop duplicates of this job (BullMQ's deduplication)."
    )
    timeout: int | None = Field(
        default=None, gt=0, description="Milliseconds an attempt may run before it fails."
    )
    fail_parent_on_failure: bool | None = Field(
        default=None, description="Flows: when this child fails for good, fail its parent."
    )
    ignore_dependency_on_failure: bool | None = Field(
        default=None, description="Flows: a failed child counts as done (its reason kept)."
    )
    remove_dependency_on_failure: bool | None = Field(
        default=None, description="Flows: a failed child is dropped from its parent."
    )

    @model_validator(mode="after")
    def _one_failure_policy(self) -> JobOptions:
        chosen = [name for name in _FAILURE_POLICIES if getattr(self, name)]
        if len(chosen) > 1:  # BullMQ refuses them together too
            raise ValueError(f"{' and '.join(chosen)} cannot be used together")
        return self

    @field_validator("backoff", mode="before")
    @classmethod
    def _reject_negative_backoff(cls, value: object) -> object:
        if isinstance(value, int) and not isinstance(value, bool) and value < 0:
            raise ValueError("a backoff delay must be >= 0 ms")
        return value

    @field_validator("job_id")
    @classmethod
    def _job_id_shape(cls, value: str | None) -> str | None:
        if value is None:
            return value
        if value.isdigit():
            raise ValueError(
                "a custom job id cannot be an integer (it would clash with BullMQ's own ids)"
            )
        if ":" in value:
            raise ValueError("a custom job id cannot contain ':'")
        return value

    def resolve(self, defaults: JobDefaults) -> ResolvedOptions:
        """These options over ``defaults``: every option with its effective value."""
        backoff = self.backoff if self.backoff is not None else defaults.backoff
        if isinstance(backoff, int):
            backoff = BackoffSettings(type="fixed", delay=backoff)
        return ResolvedOptions(
            attempts=self.attempts if self.attempts is not None else defaults.attempts,
            backoff=backoff,
            remove_on_complete=(defaults.remove_on_complete if self.remove_on_complete is None
                                else self.remove_on_complete),
            remove_on_fail=(defaults.remove_on_fail if self.remove_on_fail is None
                            else self.remove_on_fail),
            delay=self.delay or 0,
            priority=self.priority or 0,
            job_id=self.job_id,
            lifo=bool(self.lifo),
            deduplication=self.deduplication,
            timeout=self.timeout or 0,
            fail_parent_on_failure=bool(self.fail_parent_on_failure),
            ignore_dependency_on_failure=bool(self.ignore_dependency_on_failure),
            remove_dependency_on_failure=bool(self.remove_dependency_on_failure),
        )


#: The flow options that say what a failed child does to its parent (at most one).
_FAILURE_POLICIES = ("fail_parent_on_failure", "ignore_dependency_on_failure",
                     "remove_dependency_on_failure")


@dataclass(frozen=True, slots=True)
class ResolvedOptions:
    """A job's options with the defaults applied: what a backend stores and obeys.

    Typed and backend-neutral; the Redis backend turns it into BullMQ's camelCase
    ``JobsOptions`` (``queuekit.redis.wire``).
    """

    attempts: int
    backoff: BackoffSettings
    remove_on_complete: Retention
    remove_on_fail: Retention
    delay: int = 0
    priority: int = 0
    job_id: str | None = None
    lifo: bool = False
    deduplication: Deduplication | None = None
    timeout: int = 0
    fail_parent_on_failure: bool = False
    ignore_dependency_on_failure: bool = False
    remove_dependency_on_failure: bool = False


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
    if not value:
        return None
    return dt.datetime.fromtimestamp(value / 1000, tz=dt.UTC)


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
