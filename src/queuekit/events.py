"""Queue events as an async iterator, the same on both backends.

``QueueService.events(queue)`` returns an :class:`EventStream`; enter it before acting so
no event is missed::

    async with qs.events(QueueName.REPORTS) as events:
        job = await qs.add_job(...)
        async for event in events:
            if event.job_id == job.id and event.type == "completed":
                break
"""

from __future__ import annotations

import abc
import asyncio
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType
from typing import Any

from queuekit.errors import QueueUnavailableError


class EventType(StrEnum):
    """What happened to a job."""

    WAITING = "waiting"
    DELAYED = "delayed"
    ACTIVE = "active"
    PROGRESS = "progress"
    COMPLETED = "completed"
    FAILED = "failed"
    RETRYING = "retrying"
    STALLED = "stalled"
    DEDUPLICATED = "deduplicated"


@dataclass(frozen=True)
class QueueEvent:
    """One event of one job.

    ``data`` depends on ``type``: the progress value (progress), the return value
    (completed), the failed reason (failed), the backoff in ms (retrying), the delay in ms
    (delayed), ``{"deduplication_id", "deduplicated_job_id"}`` (deduplicated: ``job_id``
    is the job that stays, ``deduplicated_job_id`` the one dropped or replaced).
    ``attempt`` is 1-based: the attempt that failed (failed) or the attempt that comes
    next (retrying). ``will_retry`` says whether a failed job has attempts left.
    """

    type: EventType
    queue: str
    job_id: str
    data: Any = None
    attempt: int | None = None
    will_retry: bool = False


class EventStream(abc.ABC):
    """An async iterator of :class:`QueueEvent`; an async context manager that subscribes
    on entry and unsubscribes on exit."""

    def __init__(self, queue: str) -> None:
        self.queue = queue
        self._pending: asyncio.Queue[QueueEvent | BaseException] = asyncio.Queue()
        self._opened = False
        self._closed = False

    async def __aenter__(self) -> EventStream:
        await self.open()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None,
                        exc: BaseException | None, tb: TracebackType | None) -> None:
        await self.aclose()

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> QueueEvent:
        if not self._opened:
            await self.open()
        if self._closed and self._pending.empty():
            raise StopAsyncIteration
        item = await self._pending.get()
        if isinstance(item, BaseException):
            if isinstance(item, StopAsyncIteration):
                raise StopAsyncIteration
            raise item
        return item

    def _put(self, item: QueueEvent | BaseException) -> None:
        self._pending.put_nowait(item)

    async def open(self) -> None:
        """Subscribe; events that happen after this returns are delivered."""
        if not self._opened:
            self._opened = True
            await self._subscribe()

    async def aclose(self) -> None:
        """Unsubscribe; iteration ends after the events already received."""
        if self._closed:
            return
        self._closed = True
        await self._unsubscribe()
        self._put(StopAsyncIteration())

    def _fail(self, error: BaseException) -> None:
        """End the stream with ``error`` (as :class:`QueueUnavailableError`)."""
        if not isinstance(error, QueueUnavailableError):
            error = QueueUnavailableError(f"event stream of {self.queue!r} broke: {error}")
        self._put(error)

    @abc.abstractmethod
    async def _subscribe(self) -> None:
        """Start delivering events."""

    @abc.abstractmethod
    async def _unsubscribe(self) -> None:
        """Stop delivering events and release what was held."""
