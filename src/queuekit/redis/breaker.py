"""A circuit breaker for awaited Redis calls, on top of pybreaker.

pybreaker's own ``call_async`` needs tornado, and in half-open state it lets every
concurrent caller through. :class:`AsyncCircuitBreaker` drives pybreaker's
``calling()`` context around the awaited call and admits exactly one trial call while
half-open; the others fail fast with :class:`CircuitOpenError`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pybreaker
from redis.exceptions import ClusterDownError, MasterDownError, SlotNotCoveredError, TryAgainError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from queuekit.errors import CircuitOpenError, QueueUnavailableError
from queuekit.settings import BreakerSettings

T = TypeVar("T")
log = logging.getLogger("queuekit.breaker")

#: Errors that mean "Redis is not there"; anything else is an answer from Redis.
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    ConnectionError,
    TimeoutError,
    OSError,
    # Redis Cluster: no master for a slot yet (a failover outlasting cluster_failover_wait).
    ClusterDownError,
    MasterDownError,
    TryAgainError,
    SlotNotCoveredError,
)


def make_breaker(settings: BreakerSettings,
                 name: str = "queuekit-redis") -> pybreaker.CircuitBreaker:
    """A pybreaker breaker that counts only unavailability, never our own errors."""
    return pybreaker.CircuitBreaker(
        fail_max=settings.fail_max,
        reset_timeout=settings.reset_timeout,
        exclude=[lambda exc: not isinstance(exc, UNAVAILABLE_ERRORS)],
        name=name,
    )


class AsyncCircuitBreaker:
    """Guards awaited calls with a pybreaker ``CircuitBreaker``."""

    def __init__(self, breaker: pybreaker.CircuitBreaker, target: str = "redis") -> None:
        self.breaker = breaker
        self.target = target
        self._trial_running = False

    @property
    def state(self) -> str:
        """``closed``, ``open`` or ``half-open`` (an open breaker past its timeout is half-open)."""
        state = str(self.breaker.current_state)
        if state == pybreaker.STATE_OPEN and self._timeout_elapsed():
            return pybreaker.STATE_HALF_OPEN
        return state

    @property
    def fail_counter(self) -> int:
        """Consecutive failures counted so far."""
        return int(self.breaker.fail_counter)

    def _timeout_elapsed(self) -> bool:
        opened_at = self.breaker._state_storage.opened_at
        if opened_at is None:
            return True
        reset = dt.timedelta(seconds=self.breaker.reset_timeout)
        return dt.datetime.now(dt.UTC) >= opened_at + reset

    def _open_error(self) -> CircuitOpenError:
        return CircuitOpenError(
            f"{self.target} is unavailable: the circuit breaker is open after "
            f"{self.breaker.fail_max} failures; retrying in at most "
            f"{self.breaker.reset_timeout:g} s"
        )

    def _record_failure(self, exc: BaseException) -> None:
        """Count ``exc`` as a failure through pybreaker's state machine (it may open)."""
        try:
            with self.breaker.calling():
                raise exc
        except pybreaker.CircuitBreakerError:
            log.warning("circuit breaker for %s opened", self.target)
        except UNAVAILABLE_ERRORS:
            pass

    async def call(self, fn: Callable[[], Awaitable[T]]) -> T:
        """Await ``fn()`` under the breaker.

        Unavailability (connection refused, timeouts) counts as a failure and is raised as
        :class:`QueueUnavailableError`; other errors pass through uncounted.
        """
        if self._clean():
            # Hot path: nothing to count on success; a failure is recorded by pybreaker.
            try:
                return await fn()
            except UNAVAILABLE_ERRORS as exc:
                raise self._unavailable(exc) from exc
        return await self._call_counted(fn)

    def start(self, fn: Callable[..., Awaitable[T]], *args: object) -> Awaitable[T]:
        """``fn(*args)`` under the breaker, as :meth:`call`, with its synchronous part (a
        command's write) run now: the awaitable of its result, which must be awaited.
        While failures are being counted it starts when awaited, through :meth:`call`."""
        if not self._clean():
            return self._call_counted(lambda: fn(*args))
        try:
            pending = fn(*args)
        except UNAVAILABLE_ERRORS as exc:
            raise self._unavailable(exc) from exc
        return self._guarded(pending)

    def _clean(self) -> bool:
        breaker = self.breaker
        return bool(breaker.fail_counter == 0
                    and breaker.current_state == pybreaker.STATE_CLOSED)

    def _unavailable(self, exc: BaseException) -> QueueUnavailableError:
        self._record_failure(exc)
        return QueueUnavailableError(f"{self.target} is unavailable: {exc}")

    async def _guarded(self, pending: Awaitable[T]) -> T:
        try:
            return await pending
        except UNAVAILABLE_ERRORS as exc:
            raise self._unavailable(exc) from exc

    async def _call_counted(self, fn: Callable[[], Awaitable[T]]) -> T:
        state = self.state
        if state == pybreaker.STATE_OPEN:
            raise self._open_error()
        trial = state == pybreaker.STATE_HALF_OPEN
        if trial:
            if self._trial_running:
                raise self._open_error()
            self._trial_running = True
        try:
            with self.breaker.calling():
                return await fn()
        except pybreaker.CircuitBreakerError as exc:
            log.warning("circuit breaker for %s opened", self.target)
            cause = exc.__context__ or exc
            raise QueueUnavailableError(f"{self.target} is unavailable: {cause}") from cause
        except UNAVAILABLE_ERRORS as exc:
            if isinstance(exc, asyncio.CancelledError):  # pragma: no cover - not an OSError
                raise
            raise QueueUnavailableError(f"{self.target} is unavailable: {exc}") from exc
        finally:
            if trial:
                self._trial_running = False
