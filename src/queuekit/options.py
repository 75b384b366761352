"""The options of one job: what a caller passes (:class:`JobOptions`) and what a backend
obeys once the configured defaults are applied (:class:`ResolvedOptions`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from queuekit.settings import BackoffSettings, JobDefaults, KeepJobs

#: BullMQ's highest priority number (2^21); 1 is the most urgent, 0 means none.
MAX_PRIORITY = 2_097_152

Retention = bool | int | KeepJobs


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
