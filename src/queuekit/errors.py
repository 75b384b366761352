"""The one exception hierarchy of queuekit.

Every error a caller can meet is a subclass of :class:`QueuekitError` and carries a
message that says what went wrong and what to do about it::

    QueuekitError
    ├── ConfigurationError            bad settings; raised at start-up
    ├── QueueUnavailableError         Redis unreachable, refused or circuit open
    │   └── CircuitOpenError          the breaker is open; no network call was made
    ├── PayloadValidationError        a payload or job option failed validation
    │   └── SensitiveDataError        a payload carries a key that looks like a secret
    ├── UnknownQueueError             a queue with no registered payload model
    ├── RateLimitExceededError        too many additions for one user; see ``retry_after``
    ├── JobNotFoundError              no job with that id on that queue
    ├── JobTimeoutError               ``wait_for_job`` gave up (also a ``TimeoutError``)
    ├── AttemptTimeoutError           an attempt ran past its ``timeout`` (it is retried)
    ├── JobActiveError                the job (or a job of the queue) is active under a lock
    ├── WorkerError                   a worker could not be created (e.g. one already runs)
    ├── ServiceClosedError            the service was used after ``close()``
    ├── UnrecoverableError            raised by a processor: fail the job, no more attempts
    │   └── JobCancelledError         ``cancel_job`` ended the attempt ("cancelled")
    └── RateLimitedError              raised by a processor: back to waiting, queue throttled
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class QueuekitError(Exception):
    """Base class of every error queuekit raises."""


class ConfigurationError(QueuekitError):
    """A setting is missing or invalid; the message names the setting's path."""


class QueueUnavailableError(QueuekitError):
    """Redis could not be reached (or refused us); the job was not added.

    The message names the server URL with its password masked.
    """


class CircuitOpenError(QueueUnavailableError):
    """The circuit breaker is open after repeated Redis failures; the call failed fast."""


@dataclass(frozen=True)
class FieldError:
    """One problem with one field of a payload: its dotted path and what was wrong."""

    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.field}: {self.message}"


class PayloadValidationError(QueuekitError, ValueError):
    """A payload (or job options) failed validation; nothing was written to Redis.

    ``errors`` lists each offending field with its reason.
    """

    def __init__(self, subject: str, errors: Sequence[FieldError]) -> None:
        self.subject = subject
        self.errors: tuple[FieldError, ...] = tuple(errors)
        details = "; ".join(str(e) for e in self.errors)
        super().__init__(f"invalid {subject}: {details}")

    @property
    def fields(self) -> tuple[str, ...]:
        """The dotted paths of the offending fields."""
        return tuple(e.field for e in self.errors)


class SensitiveDataError(PayloadValidationError):
    """A payload carries a key that looks like a secret (token, password, ...).

    Payloads must carry ids; load secrets inside the processor from their store.
    """


class UnknownQueueError(QueuekitError, KeyError):
    """No payload model is registered for this queue name."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class RateLimitExceededError(QueuekitError):
    """A user added more jobs than the queue's per-user limit allows.

    ``retry_after`` is the number of seconds after which a new attempt can succeed.
    """

    def __init__(self, queue: str, user_id: str, limit: int, window_ms: int,
                 retry_after: float) -> None:
        self.queue = queue
        self.user_id = user_id
        self.limit = limit
        self.window_ms = window_ms
        self.retry_after = retry_after
        super().__init__(
            f"rate limit exceeded on queue {queue!r} for user {user_id!r}: at most {limit} "
            f"jobs per {window_ms} ms; retry after {retry_after:.3f} s"
        )


class JobNotFoundError(QueuekitError, LookupError):
    """No job with this id exists on this queue (it may have been removed by retention)."""


class JobTimeoutError(QueuekitError, TimeoutError):
    """``wait_for_job`` timed out before the job completed or failed."""


class WorkerError(QueuekitError):
    """A worker could not be created or started."""


class ServiceClosedError(QueuekitError):
    """The queue service was used after it was closed."""


class UnrecoverableError(QueuekitError):
    """Raise from a processor to fail the job at once, with no further attempts."""


class JobActiveError(QueuekitError):
    """A job is active under a worker's lock, so it cannot be removed (or, for
    ``obliterate``, the queue still has active jobs). Wait for it to finish, or use
    ``force`` where the call offers it."""


class RateLimitedError(QueuekitError):
    """Raised by a processor (``await job.rate_limit(ms)`` raises it for you) when the
    downstream service throttles: the queue's limiter is set for ``delay_ms``, the job
    goes back to waiting without using up an attempt, and it runs again after the limit.
    """

    def __init__(self, delay_ms: int, message: str | None = None) -> None:
        self.delay_ms = delay_ms
        super().__init__(message or f"queue rate limited for {delay_ms} ms; the job goes "
                                    "back to waiting")
class JobCancelledError(UnrecoverableError):
    """``cancel_job`` ended a running attempt: the job fails for good, reason "cancelled"."""

    def __init__(self) -> None:
        super().__init__("cancelled")


class AttemptTimeoutError(QueuekitError, TimeoutError):
    """An attempt ran longer than the job's ``timeout``; it is retried per ``attempts``."""

    def __init__(self, timeout_ms: int) -> None:
        super().__init__(f"job timed out after {timeout_ms} ms")
        self.timeout_ms = timeout_ms
