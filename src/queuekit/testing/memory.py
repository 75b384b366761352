"""An in-memory ``QueueService``: the same contract in one process, for tests and demos.

It is not a mock: delays, priorities, retries with backoff, progress, retention, counts
and graceful close behave as on Redis. Idle waits (a delayed job, a retry backoff) run on
a :class:`VirtualClock` that jumps ahead when every worker is idle, so a job with three
attempts and 1 s / 2 s / 4 s backoff finishes in milliseconds of wall time while its
timestamps show the backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import json
import logging
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from queuekit.errors import PayloadValidationError, UnrecoverableError
from queuekit.events import EventStream, EventType, QueueEvent
from queuekit.jobs import COUNT_STATES, Progress, result_from_wire
from queuekit.queues import QueueRegistry
from queuekit.ratelimit import MemoryRateLimiter, RateLimiter
from queuekit.service import (
    PreparedJob,
    Processor,
    QueueService,
    QueueWorker,
    RawJob,
    normalise_result,
)
from queuekit.settings import QueuekitSettings
from queuekit.testing.clock import VirtualClock

log = logging.getLogger("queuekit.memory")

#: Loop turns an idle worker lets pass before the clock jumps, so that a caller that
#: is about to add a job or a processor that is about to finish gets there first.
_SETTLE_TURNS = 8


def _copy_json(value: Any) -> Any:
    """What a value looks like after a trip through Redis (JSON)."""
    return json.loads(json.dumps(value))


@dataclass
class _Job:
    id: str
    name: str
    data: Any
    opts: dict[str, Any]
    timestamp: int
    state: str = "waiting"
    progress: Progress = 0
    attempts_made: int = 0
    return_value: Any = None
    failed_reason: str | None = None
    processed_on: int = 0
    finished_on: int = 0
    logs: list[str] = field(default_factory=list)

    def raw(self) -> RawJob:
        return RawJob(
            id=self.id, name=self.name, data=_copy_json(self.data), opts=dict(self.opts),
            state=self.state, progress=_copy_json(self.progress),
            attempts_made=self.attempts_made, return_value=_copy_json(self.return_value),
            failed_reason=self.failed_reason, timestamp=self.timestamp,
            processed_on=self.processed_on, finished_on=self.finished_on,
            delay=int(self.opts.get("delay", 0)), priority=int(self.opts.get("priority", 0)),
        )


class _Queue:
    """One queue's jobs, in BullMQ's states."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.jobs: dict[str, _Job] = {}
        self.waiting: deque[str] = deque()
        self.prioritized: list[tuple[int, int, str]] = []
        self.delayed: list[tuple[int, int, str]] = []
        self.active: set[str] = set()
        self.completed: list[str] = []
        self.failed: list[str] = []
        self.ids = itertools.count(1)
        self.seq = itertools.count()
        self._changed = asyncio.Event()
        self.subscribers: set[MemoryEventStream] = set()

    def emit(self, type: EventType, job: _Job, data: Any = None, attempt: int | None = None,
             will_retry: bool = False) -> None:
        """Deliver an event to every subscriber of this queue."""
        if self.subscribers:
            value = _copy_json(data)
            if type is EventType.COMPLETED:
                value = result_from_wire(value)
            event = QueueEvent(type, self.name, job.id, value, attempt, will_retry)
            for stream in self.subscribers:
                stream._put(event)

    def notify(self) -> None:
        """Wake everyone waiting for a change on this queue."""
        self._changed.set()
        self._changed = asyncio.Event()

    async def changed(self, timeout: float | None) -> None:
        """Return on the next change, or after ``timeout`` seconds."""
        event = self._changed
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout)

    def next_due(self) -> int | None:
        return self.delayed[0][0] if self.delayed else None

    def enqueue(self, job: _Job, now: int, delay: int) -> None:
        """Put ``job`` in delayed, prioritized or waiting, as BullMQ would."""
        if delay > 0:
            job.state = "delayed"
            heapq.heappush(self.delayed, (now + delay, next(self.seq), job.id))
        elif int(job.opts.get("priority", 0)):
            job.state = "prioritized"
            heapq.heappush(self.prioritized,
                           (int(job.opts["priority"]), next(self.seq), job.id))
        else:
            job.state = "waiting"
            if job.opts.get("lifo"):
                self.waiting.appendleft(job.id)
            else:
                self.waiting.append(job.id)

    def take(self, now: int) -> _Job | None:
        """Promote due delayed jobs, then take the next waiting or prioritized job."""
        while self.delayed and self.delayed[0][0] <= now:
            _, _, job_id = heapq.heappop(self.delayed)
            job = self.jobs.get(job_id)
            if job is not None and job.state == "delayed":
                self.enqueue(job, now, 0)
                self.emit(EventType.WAITING, job)
        while self.waiting or self.prioritized:
            if self.waiting:
                job_id = self.waiting.popleft()
            else:
                _, _, job_id = heapq.heappop(self.prioritized)
            job = self.jobs.get(job_id)
            if job is not None and job.state in ("waiting", "prioritized"):
                return job
        return None

    def counts(self) -> dict[str, int]:
        found = dict.fromkeys(COUNT_STATES, 0)
        for job in self.jobs.values():
            if job.state in found:
                found[job.state] += 1
        return found

    def listed(self, state: str) -> list[_Job]:
        """The jobs in ``state``, in BullMQ's listing order: finished ones newest first,
        the others in the order they run."""
        if state == "waiting":
            ids: list[str] = list(self.waiting)
        elif state in ("prioritized", "delayed"):
            ids = [job_id for _, _, job_id in sorted(getattr(self, state))]
        elif state == "active":
            ids = sorted(self.active, key=lambda job_id: self.jobs[job_id].processed_on)
        else:
            ids = list(reversed(self.completed if state == "completed" else self.failed))
        found: list[_Job] = []
        for job_id in dict.fromkeys(ids):
            job = self.jobs.get(job_id)
            if job is not None and job.state == state:
                found.append(job)
        return found

    def retry_failed(self) -> int:
        """Failed jobs back to waiting, oldest failure first (BullMQ's ``retryJobs``)."""
        moved = [job_id for job_id in self.failed if job_id in self.jobs]
        for job_id in moved:
            job = self.jobs[job_id]
            job.state = "waiting"
            job.failed_reason = None
            job.processed_on = job.finished_on = 0
            self.waiting.append(job_id)
            self.emit(EventType.WAITING, job)
        self.failed.clear()
        if moved:
            self.notify()
        return len(moved)

    def retain(self, finished: list[str], spec: object, now: int) -> None:
        """Apply ``removeOnComplete`` / ``removeOnFail`` to a finished list (newest last)."""
        if spec is True:
            keep: list[str] = []
        elif spec is False or spec is None:
            return
        elif isinstance(spec, int):
            keep = finished[-spec:] if spec > 0 else []
        elif isinstance(spec, Mapping):
            keep = list(finished)
            age = spec.get("age")
            if age is not None:
                keep = [j for j in keep if now - self.jobs[j].finished_on <= int(age) * 1000]
            count = spec.get("count")
            if count is not None:
                keep = keep[-int(count):] if int(count) > 0 else []
        else:  # pragma: no cover - options are validated before they get here
            return
        kept = set(keep)
        for job_id in finished:
            if job_id not in kept:
                self.jobs.pop(job_id, None)
        finished[:] = keep


class _Reporter:
    def __init__(self, service: InMemoryQueueService, queue: _Queue, job: _Job) -> None:
        self._service = service
        self._queue = queue
        self._job = job

    async def update_progress(self, progress: Progress) -> None:
        self._job.progress = _copy_json(progress)
        self._queue.emit(EventType.PROGRESS, self._job, progress)
        self._queue.notify()
        await asyncio.sleep(0)

    async def log(self, text: str) -> None:
        self._job.logs.append(text)
        await asyncio.sleep(0)


class MemoryEventStream(EventStream):
    """Events of one in-memory queue, delivered as they happen."""

    def __init__(self, queue: _Queue) -> None:
        super().__init__(queue.name)
        self._source = queue

    async def _subscribe(self) -> None:
        self._source.subscribers.add(self)

    async def _unsubscribe(self) -> None:
        self._source.subscribers.discard(self)


class MemoryWorker(QueueWorker):
    """A worker of the in-memory service: ``concurrency`` jobs at once, in tasks."""

    def __init__(self, service: InMemoryQueueService, queue: str, processor: Processor,
                 concurrency: int) -> None:
        super().__init__(queue, processor, concurrency)
        self._service = service
        self._queue = service._queue(queue)
        self._slots = asyncio.Semaphore(concurrency)
        self._active: dict[asyncio.Task[None], _Job] = {}
        self._closing = False
        self._closed = False
        self._loop_task = asyncio.ensure_future(self._loop())

    @property
    def running(self) -> bool:
        return not self._closed and not self._loop_task.done()

    @property
    def active_jobs(self) -> int:
        """Jobs being processed right now."""
        return len(self._active)

    async def _loop(self) -> None:
        clock = self._service.clock
        while not self._closing:
            await self._slots.acquire()
            job = None
            while job is None and not self._closing:
                job = self._queue.take(clock.now_ms())
                if job is None:
                    await self._service._idle(self._queue)
            if job is None:
                self._slots.release()
                break
            self._start(job)

    def _start(self, job: _Job) -> None:
        queue = self._queue
        job.state = "active"
        job.processed_on = self._service.clock.now_ms()
        queue.active.add(job.id)
        queue.emit(EventType.ACTIVE, job)
        task = asyncio.ensure_future(self._process(job))
        self._active[task] = job
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._active.pop(task, None)
        self._slots.release()

    async def _process(self, job: _Job) -> None:
        service, queue = self._service, self._queue
        extra = {"queue": queue.name, "job_id": job.id}
        try:
            context = service._context(queue.name, job.raw(), _Reporter(service, queue, job))
        except PayloadValidationError as exc:
            log.error("job %s on %s rejected: %s", job.id, queue.name, exc, extra=extra)
            self._fail(job, exc, final=True)
            return
        try:
            result = normalise_result(await self.processor(context))
        except asyncio.CancelledError:
            # Forced close: the job is not lost; like a stalled job on Redis it goes back.
            queue.active.discard(job.id)
            queue.enqueue(job, service.clock.now_ms(), 0)
            queue.notify()
            log.warning("job %s on %s interrupted by shutdown; back to waiting", job.id,
                        queue.name, extra=extra)
            raise
        except Exception as exc:
            self._fail(job, exc, final=isinstance(exc, UnrecoverableError))
            return
        now = service.clock.now_ms()
        queue.active.discard(job.id)
        job.attempts_made += 1
        job.state = "completed"
        job.return_value = _copy_json(result)
        job.finished_on = now
        queue.completed.append(job.id)
        queue.emit(EventType.COMPLETED, job, job.return_value)
        queue.retain(queue.completed, job.opts.get("removeOnComplete"), now)
        queue.notify()
        log.info("job %s on %s completed", job.id, queue.name, extra=extra)

    def _fail(self, job: _Job, exc: BaseException, *, final: bool) -> None:
        service, queue = self._service, self._queue
        now = service.clock.now_ms()
        queue.active.discard(job.id)
        job.attempts_made += 1
        job.failed_reason = str(exc)
        attempts = int(job.opts.get("attempts", 1) or 1)
        extra = {"queue": queue.name, "job_id": job.id}
        if not final and job.attempts_made < attempts:
            delay = backoff_delay(job.opts.get("backoff"), job.attempts_made)
            queue.emit(EventType.FAILED, job, job.failed_reason, job.attempts_made, True)
            queue.emit(EventType.RETRYING, job, delay, job.attempts_made + 1)
            queue.enqueue(job, now, delay)
            log.warning("job %s on %s failed (attempt %d of %d), retrying in %d ms: %s",
                        job.id, queue.name, job.attempts_made, attempts, delay, exc,
                        extra=extra)
        else:
            job.state = "failed"
            job.finished_on = now
            queue.failed.append(job.id)
            queue.emit(EventType.FAILED, job, job.failed_reason, job.attempts_made, False)
            queue.retain(queue.failed, job.opts.get("removeOnFail"), now)
            log.error("job %s on %s failed (attempt %d of %d): %s", job.id, queue.name,
                      job.attempts_made, attempts, exc, extra=extra)
        queue.notify()

    async def close(self, timeout: float | None = None) -> None:
        if self._closed:
            return
        self._closing = True
        self._queue.notify()
        # With every slot busy the loop waits for one to free up, which a job that runs
        # past the deadline never does: stop it now, the deadline applies to the jobs.
        self._loop_task.cancel()
        await asyncio.gather(self._loop_task, return_exceptions=True)
        tasks = set(self._active)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=timeout)
            if pending:
                log.warning("worker for %s: %d job(s) still active after %s s; forcing close",
                            self.queue, len(pending), timeout, extra={"queue": self.queue})
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
        self._closed = True
        log.info("worker for %s closed", self.queue, extra={"queue": self.queue})


def backoff_delay(backoff: object, attempts_made: int) -> int:
    """BullMQ's built-in backoffs: fixed, or exponential ``delay * 2^(attempts_made-1)``."""
    if not isinstance(backoff, Mapping):
        return 0
    delay = int(backoff.get("delay", 0) or 0)
    if backoff.get("type") == "exponential":
        return delay * (1 << max(attempts_made - 1, 0))
    return delay


class InMemoryQueueService(QueueService):
    """``QueueService`` in one process, on a virtual clock. Works with no arguments."""

    backend = "memory"

    def __init__(
        self,
        settings: QueuekitSettings | None = None,
        registry: QueueRegistry | None = None,
        *,
        clock: VirtualClock | None = None,
        autojump: bool = True,
    ) -> None:
        super().__init__(settings, registry)
        self.clock = clock or VirtualClock()
        self.autojump = autojump
        self._queues: dict[str, _Queue] = {}

    def _now_ms(self) -> int:
        return self.clock.now_ms()

    def _queue(self, name: str) -> _Queue:
        queue = self._queues.get(name)
        if queue is None:
            queue = self._queues[name] = _Queue(name)
        return queue

    def _busy(self) -> bool:
        return any(q.active for q in self._queues.values())

    async def _idle(self, queue: _Queue) -> None:
        """Wait for work on ``queue``; jump the clock when nothing at all is running."""
        due = queue.next_due()
        if due is None:
            await queue.changed(None)
            return
        for _ in range(_SETTLE_TURNS):
            await asyncio.sleep(0)
        if queue.next_due() != due or queue.waiting or queue.prioritized:
            return
        now = self.clock.now_ms()
        if self.autojump and not self._busy() and due > now:
            self.clock.advance(due - now)
            for other in self._queues.values():  # their waits were computed on the old time
                other.notify()
            return
        await queue.changed(max(0.0, (due - now) / 1000))

    def _store(self, job: PreparedJob) -> str:
        queue = self._queue(job.queue)
        custom = job.opts.get("jobId")
        if custom is not None and custom in queue.jobs:
            return str(custom)
        job_id = str(custom) if custom is not None else str(next(queue.ids))
        now = self.clock.now_ms()
        stored = _Job(id=job_id, name=job.name, data=_copy_json(job.wire),
                      opts=_copy_json(job.opts), timestamp=now)
        queue.jobs[job_id] = stored
        delay = int(job.opts.get("delay", 0))
        queue.enqueue(stored, now, delay)
        queue.emit(EventType.DELAYED if delay > 0 else EventType.WAITING, stored,
                   delay if delay > 0 else None)
        return job_id

    async def _add(self, job: PreparedJob) -> str:
        job_id = self._store(job)
        self._queue(job.queue).notify()
        return job_id

    async def _add_bulk(self, jobs: Sequence[PreparedJob]) -> list[str]:
        ids = [self._store(job) for job in jobs]
        self._queue(jobs[0].queue).notify()
        return ids

    def _start_worker(self, queue: str, processor: Processor, concurrency: int) -> QueueWorker:
        return MemoryWorker(self, queue, processor, concurrency)

    async def _get_raw_job(self, queue: str, job_id: str) -> RawJob | None:
        job = self._queue(queue).jobs.get(job_id)
        return None if job is None else job.raw()

    async def get_job_logs(self, queue: str, job_id: str) -> list[str]:
        """The lines a processor logged for the job."""
        job = self._queue(str(queue)).jobs.get(str(job_id))
        return [] if job is None else list(job.logs)

    async def _get_counts(self, queue: str) -> dict[str, int]:
        return self._queue(queue).counts()

    async def _get_raw_jobs(self, queue: str, state: str, limit: int) -> list[RawJob]:
        return [job.raw() for job in self._queue(queue).listed(state)[:limit]]

    async def _retry_failed(self, queue: str) -> int:
        return self._queue(queue).retry_failed()

    async def _stored_queues(self) -> set[str]:
        return {name for name, queue in self._queues.items() if queue.jobs}

    async def _count_workers(self, queue: str) -> int:
        worker = self._workers.get(queue)
        return 1 if worker is not None and worker.running else 0

    async def _wait_for_change(self, queue: str, job_id: str, timeout: float,
                               attempt: int) -> None:
        await self._queue(queue).changed(timeout)

    async def _health_backend(self) -> tuple[str, str]:
        return "ok", "closed"

    def _make_rate_limiter(self) -> RateLimiter:
        return MemoryRateLimiter(self.settings.security.rate_limits, self.clock.now_ms)

    def _event_stream(self, queue: str) -> EventStream:
        return MemoryEventStream(self._queue(queue))

    async def _close_backend(self) -> None:
        for queue in self._queues.values():
            queue.notify()
