"""The in-memory store: jobs and queues in BullMQ's states, and their event streams."""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import json
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from queuekit.events import EventStream, EventType, QueueEvent
from queuekit.jobs import COUNT_STATES, Progress, ResolvedOptions, Retention, result_from_wire
from queuekit.records import RawJob
from queuekit.settings import BackoffSettings, WorkerLimiter


def copy_json(value: Any) -> Any:
    """What a value looks like after a trip through Redis (JSON)."""
    return json.loads(json.dumps(value))


@dataclass
class FlowDeps:
    """A flow parent's children, by child job key (BullMQ's ``:dependencies``,
    ``:processed``, ``:failed`` and ``:unsuccessful``)."""

    pending: set[str] = field(default_factory=set)
    processed: dict[str, Any] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)
    unsuccessful: dict[str, int] = field(default_factory=dict)


@dataclass
class StoredJob:
    id: str
    name: str
    data: Any
    options: ResolvedOptions
    timestamp: int
    state: str = "waiting"
    progress: Progress = 0
    attempts_made: int = 0
    return_value: Any = None
    failed_reason: str | None = None
    processed_on: int = 0
    finished_on: int = 0
    logs: list[str] = field(default_factory=list)
    scheduler: str | None = None  # the job scheduler whose run this is (BullMQ's rjk)
    repeat_count: int = 0  # which run of its scheduler (BullMQ's opts.repeat.count)
    parent: tuple[str, str] | None = None  # flows: (queue, id) of the parent
    deps: FlowDeps | None = None  # flows: set on a parent
    deferred_failure: str | None = None  # flows: a failed child failed this parent
    trace_metadata: str | None = None
    stacktrace: list[str] = field(default_factory=list)

    def raw(self) -> RawJob:
        return RawJob(
            id=self.id, name=self.name, data=copy_json(self.data), state=self.state,
            max_attempts=self.options.attempts, progress=copy_json(self.progress),
            attempts_made=self.attempts_made, return_value=copy_json(self.return_value),
            failed_reason=self.failed_reason, timestamp=self.timestamp,
            processed_on=self.processed_on, finished_on=self.finished_on,
            delay=self.options.delay, priority=self.options.priority,
            timeout=self.options.timeout,
            trace_metadata=self.trace_metadata, stacktrace=tuple(self.stacktrace),
        )


class MemoryQueue:
    """One queue's jobs, in BullMQ's states."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.jobs: dict[str, StoredJob] = {}
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
        self.reset_controls()

    def reset_controls(self) -> None:
        """Pause, caps, limiter windows and deduplication keys as on a new queue."""
        self.paused = False
        self.concurrency: int | None = None
        self.limiter: WorkerLimiter | None = None
        self.limited_until = 0  # a manual rate limit (virtual ms)
        self.window_end = 0  # the limiter's current window and its starts
        self.window_count = 0
        self.dedup: dict[str, tuple[str, int | None]] = {}  # id -> (job id, expires at)

    def emit(self, type: EventType, job: StoredJob, data: Any = None, attempt: int | None = None,
             will_retry: bool = False) -> None:
        """Deliver an event to every subscriber of this queue."""
        self.emit_for(type, job.id, data, attempt, will_retry)

    def emit_for(self, type: EventType, job_id: str, data: Any = None,
                 attempt: int | None = None, will_retry: bool = False) -> None:
        """:meth:`emit` by job id."""
        if self.subscribers:
            value = copy_json(data)
            if type is EventType.COMPLETED:
                value = result_from_wire(value)
            event = QueueEvent(type, self.name, job_id, value, attempt, will_retry)
            for stream in self.subscribers:
                stream._put(event)

    def notify(self) -> None:
        """Wake everyone waiting for a change on this queue."""
        self._changed.set()
        self._changed = asyncio.Event()

    def change_signal(self) -> asyncio.Event:
        """The event the next :meth:`notify` sets (take it before reading, then wait)."""
        return self._changed

    async def changed(self, timeout: float | None) -> None:
        """Return on the next change, or after ``timeout`` seconds."""
        event = self._changed
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(event.wait(), timeout)

    def next_due(self, now: int = 0) -> int | None:
        """When something may change without an event: the next delayed job, or the end
        of a rate limit holding back waiting jobs."""
        due = self.delayed[0][0] if self.delayed else None
        limit_end = self.limit_end(now)
        if limit_end and (self.waiting or self.prioritized):
            due = limit_end if due is None else min(due, limit_end)
        return due

    def limit_end(self, now: int) -> int:
        """When the rate limit (manual or the limiter's window) ends; 0 when not limited."""
        end = self.limited_until if self.limited_until > now else 0
        limiter = self.limiter
        if limiter and self.window_end > now and self.window_count >= limiter.max:
            end = max(end, self.window_end)
        return end

    def blocked(self, now: int) -> bool:
        """Paused, at the global concurrency, or rate limited: no job may start."""
        return (self.paused or bool(self.concurrency and len(self.active) >= self.concurrency)
                or bool(self.limit_end(now)))

    def runnable(self, now: int) -> bool:
        """Whether a job could start now."""
        return bool(self.waiting or self.prioritized) and not self.blocked(now)

    def _count_start(self, now: int) -> None:
        limiter = self.limiter
        if limiter is None:
            return
        if self.window_end <= now:  # BullMQ's limiter key: the window opens at a start
            self.window_end, self.window_count = now + limiter.duration, 0
        self.window_count += 1

    def release_dedup(self, job: StoredJob, finished: bool) -> None:
        """Drop ``job``'s deduplication key as BullMQ does: when the job finishes (unless
        the key has a ttl) or is removed, if the key still points at it."""
        dedup = job.options.deduplication
        if dedup is None:
            return
        entry = self.dedup.get(dedup.id)
        if entry is not None and entry[0] == job.id and not (finished and entry[1]):
            del self.dedup[dedup.id]

    def remove(self, job_id: str) -> StoredJob | None:
        """Take a job out of every state; return it (None when there was none)."""
        job = self.jobs.pop(job_id, None)
        if job is None:
            return None
        self.active.discard(job_id)
        for finished in (self.completed, self.failed):
            if job_id in finished:
                finished.remove(job_id)
        if job_id in self.waiting:
            self.waiting.remove(job_id)
        for name in ("delayed", "prioritized"):
            entries = [e for e in getattr(self, name) if e[2] != job_id]
            heapq.heapify(entries)
            setattr(self, name, entries)
        self.release_dedup(job, finished=False)
        return job

    def next_plain_due(self) -> int | None:
        """When the first delayed job that is not a scheduler's run is due."""
        dues = [due for due, _, job_id in self.delayed
                if (job := self.jobs.get(job_id)) is not None and job.state == "delayed"
                and job.scheduler is None]
        return min(dues, default=None)

    def next_due_after(self, now: int) -> int | None:
        """When the first delayed job due after ``now`` is due (removed ones skipped)."""
        dues = [due for due, _, job_id in self.delayed if due > now
                and (job := self.jobs.get(job_id)) is not None and job.state == "delayed"]
        return min(dues, default=None)

    def enqueue(self, job: StoredJob, now: int, delay: int) -> None:
        """Put ``job`` in delayed, prioritized or waiting, as BullMQ would."""
        if delay > 0:
            job.state = "delayed"
            heapq.heappush(self.delayed, (now + delay, next(self.seq), job.id))
        elif job.options.priority:
            job.state = "prioritized"
            heapq.heappush(self.prioritized, (job.options.priority, next(self.seq), job.id))
        else:
            job.state = "waiting"
            if job.options.lifo:
                self.waiting.appendleft(job.id)
            else:
                self.waiting.append(job.id)

    def take(self, now: int) -> StoredJob | None:
        """Promote due delayed jobs, then take the next waiting or prioritized job."""
        while self.delayed and self.delayed[0][0] <= now:
            _, _, job_id = heapq.heappop(self.delayed)
            job = self.jobs.get(job_id)
            if job is not None and job.state == "delayed":
                self.enqueue(job, now, 0)
                self.emit(EventType.WAITING, job)
        if self.blocked(now):
            return None
        while self.waiting or self.prioritized:
            if self.waiting:
                job_id = self.waiting.popleft()
            else:
                _, _, job_id = heapq.heappop(self.prioritized)
            job = self.jobs.get(job_id)
            if job is not None and job.state in ("waiting", "prioritized"):
                self._count_start(now)
                return job
        return None

    def counts(self) -> dict[str, int]:
        found = dict.fromkeys(COUNT_STATES, 0)
        for job in self.jobs.values():
            if job.state in found:
                found[job.state] += 1
        return found

    def listed(self, state: str) -> list[StoredJob]:
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
        found: list[StoredJob] = []
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

    def retain(self, finished: list[str], spec: Retention, now: int) -> None:
        """Apply ``remove_on_complete`` / ``remove_on_fail`` to a finished list (newest
        last), as BullMQ does."""
        if spec is True:
            keep: list[str] = []
        elif spec is False:
            return
        elif isinstance(spec, int):
            keep = finished[-spec:] if spec > 0 else []
        else:
            keep = list(finished)
            if spec.age is not None:
                keep = [j for j in keep if now - self.jobs[j].finished_on <= spec.age * 1000]
            if spec.count is not None:
                keep = keep[-spec.count:] if spec.count > 0 else []
        kept = set(keep)
        for job_id in finished:
            if job_id not in kept:
                self.jobs.pop(job_id, None)
        finished[:] = keep


class MemoryEventStream(EventStream):
    """Events of one in-memory queue, delivered as they happen."""

    def __init__(self, queue: MemoryQueue) -> None:
        super().__init__(queue.name)
        self._source = queue

    async def _subscribe(self) -> None:
        self._source.subscribers.add(self)

    async def _unsubscribe(self) -> None:
        self._source.subscribers.discard(self)


def backoff_delay(backoff: BackoffSettings, attempts_made: int) -> int:
    """BullMQ's built-in backoffs: fixed, or exponential ``delay * 2^(attempts_made-1)``."""
    if backoff.type == "exponential":
        return backoff.delay * (1 << max(attempts_made - 1, 0))
    return backoff.delay
