"""Raw ``bullmq`` (the official Python port), used the way DESIGN.md says it must be.

- Every connection is a ``redis.asyncio.Redis`` with ``decode_responses=True`` (without it
  the worker sees ``name=None, data={}``) and a ``socket_connect_timeout``.
- Worker connections have ``socket_timeout=None``: redis-py 8's default 5 s timeout
  stalls BullMQ's blocking ``BZPOPMIN``.
- The ``Worker`` is constructed inside the running event loop.

bullmq has no type information; its objects stay ``Any`` inside this module.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Callable, Mapping
from typing import Any, Final

from redis.asyncio import Redis

from benchmarks.common import JOB_NAME, payload
from benchmarks.measure import CompletionWatcher
from benchmarks.sides import JobCounts

CONNECT_TIMEOUT_S: Final = 5.0
_COUNT_TYPES: Final = ("waiting", "active", "delayed", "prioritized", "failed")


def _bullmq() -> Any:
    return importlib.import_module("bullmq")


def _client(redis_url: str, *, blocking: bool) -> Redis:
    if blocking:
        return Redis.from_url(
            redis_url,
            decode_responses=True,
            socket_connect_timeout=CONNECT_TIMEOUT_S,
            socket_timeout=None,
        )
    return Redis.from_url(
        redis_url, decode_responses=True, socket_connect_timeout=CONNECT_TIMEOUT_S
    )


def _job_counts(raw: Mapping[str, Any]) -> JobCounts:
    return JobCounts(
        waiting=int(raw.get("waiting", 0)) + int(raw.get("prioritized", 0)),
        active=int(raw.get("active", 0)),
        delayed=int(raw.get("delayed", 0)),
        failed=int(raw.get("failed", 0)),
    )


class BullmqProducer:
    """A ``bullmq.Queue`` adding benchmark jobs."""

    def __init__(self, redis_url: str, queue: str, options: Mapping[str, Any]) -> None:
        connection = _client(redis_url, blocking=False)
        self._queue: Any = _bullmq().Queue(queue, {"connection": connection})
        self._options = dict(options)
        self._events_key: str = self._queue.keys["events"]
        self._redis_url = redis_url
        self._watcher: CompletionWatcher | None = None

    @property
    def events_key(self) -> str:
        return self._events_key

    async def add_one(self, index: int) -> str:
        job = await self._queue.add(JOB_NAME, payload(index), self._options)
        return str(job.id)

    async def add_bulk(self, first: int, count: int) -> None:
        await self._queue.addBulk(
            [
                {"name": JOB_NAME, "data": payload(i), "opts": self._options}
                for i in range(first, first + count)
            ]
        )

    async def wait_finished(self, job_id: str) -> None:
        # The Python port has no Job.waitUntilFinished: an application reads the events
        # stream itself, as this reader does (one per producer). It reads from the
        # stream's start, not its end: created after the first add, it would otherwise
        # miss a first job completed before it looked (job ids are never reused in a
        # queue, so older events are skipped, not mistaken for this job's).
        if self._watcher is None:
            self._watcher = CompletionWatcher(self._redis_url, self._events_key)
        await self._watcher.wait_completed(job_id)

    async def aclose(self) -> None:
        if self._watcher is not None:
            await self._watcher.aclose()
        # The Queue owns the client it was given and closes it.
        await self._queue.close()


class BullmqWorkerSession:
    """A ``bullmq.Worker`` with a no-op processor, plus a ``Queue`` for the counts."""

    def __init__(self, redis_url: str, queue: str) -> None:
        self._redis_url = redis_url
        self._name = queue
        self._counts_queue: Any = _bullmq().Queue(
            queue, {"connection": _client(redis_url, blocking=False)}
        )
        self._worker: Any = None

    async def start(self, concurrency: int, on_processed: Callable[[], None]) -> None:
        async def process(job: Any, token: str) -> dict[str, bool]:
            on_processed()
            return {"success": True}

        self._worker = _bullmq().Worker(
            self._name,
            process,
            {"connection": _client(self._redis_url, blocking=True), "concurrency": concurrency},
        )

    async def job_counts(self) -> JobCounts:
        return _job_counts(await self._counts_queue.getJobCounts(*_COUNT_TYPES))

    async def set_paused(self, paused: bool) -> None:
        await (self._counts_queue.pause() if paused else self._counts_queue.resume())

    async def aclose(self) -> None:
        if self._worker is not None:
            await self._worker.close()
        await self._counts_queue.close()


class BullmqSide:
    """The raw bullmq side."""

    key = "bullmq"
    label = "raw bullmq (Python)"

    def unavailable_reason(self) -> str | None:
        try:
            _bullmq()
        except ImportError as err:
            return f"bullmq is not installed ({err})"
        return None

    def versions(self) -> dict[str, str]:
        found: dict[str, str] = {}
        for dist, label in (
            ("bullmq", "bullmq (PyPI)"),
            ("redis", "redis-py"),
            ("hiredis", "hiredis"),
            ("uvloop", "uvloop"),
        ):
            try:
                found[label] = importlib.metadata.version(dist)
            except importlib.metadata.PackageNotFoundError:
                found[label] = "not installed"
        return found

    async def open_producer(
        self, redis_url: str, queue: str, bullmq_options: Mapping[str, Any]
    ) -> BullmqProducer:
        return BullmqProducer(redis_url, queue, bullmq_options)

    async def open_worker(self, redis_url: str, queue: str) -> BullmqWorkerSession:
        return BullmqWorkerSession(redis_url, queue)


SIDE: Final = BullmqSide()
