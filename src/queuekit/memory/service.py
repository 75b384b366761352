"""An in-memory ``QueueService``: the same contract in one process, for tests and demos.

It is not a mock: delays, priorities, retries with backoff, progress, retention, counts
and graceful close behave as on Redis. Idle waits (a delayed job, a retry backoff) run on
a :class:`VirtualClock` that jumps ahead when every worker is idle, so a job with three
attempts and 1 s / 2 s / 4 s backoff finishes in milliseconds of wall time while its
timestamps show the backoff.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
from collections.abc import Sequence

from queuekit.events import EventStream, EventType
from queuekit.flows import FlowEntry, RawFlow
from queuekit.memory.clock import VirtualClock
from queuekit.memory.controls import MemoryControls
from queuekit.memory.flows import MemoryFlows
from queuekit.memory.ratelimit import MemoryRateLimiter
from queuekit.memory.schedules import MemorySchedules
from queuekit.memory.store import MemoryEventStream, MemoryQueue, StoredJob, copy_json
from queuekit.memory.waiters import QueueChangeWatch
from queuekit.memory.worker import MemoryWorker
from queuekit.processors import Processor
from queuekit.queues import QueueRegistry
from queuekit.ratelimit import RateLimiter
from queuekit.records import PreparedJob, RawJob
from queuekit.schedules import JobSchedulerInfo, SchedulerSpec
from queuekit.service import QueueService
from queuekit.settings import QueuekitSettings
from queuekit.waiting import JobWatch
from queuekit.worker import BaseWorker, QueueWorker

log = logging.getLogger("queuekit.memory")

#: Loop turns an idle worker lets pass before the clock jumps, so that a caller that
#: is about to add a job or a processor that is about to finish gets there first.
_SETTLE_TURNS = 8


def _earliest(*times: int | None) -> int | None:
    return min((t for t in times if t is not None), default=None)


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
        self._queues: dict[str, MemoryQueue] = {}
        self.schedules = MemorySchedules(self)
        self._advancing = False
        self._controls = MemoryControls(self)
        self.flows = MemoryFlows(self)

    def _now_ms(self) -> int:
        return self.clock.now_ms()

    def queue_store(self, name: str) -> MemoryQueue:
        """The store of queue ``name`` (created on first use)."""
        queue = self._queues.get(name)
        if queue is None:
            queue = self._queues[name] = MemoryQueue(name)
        return queue

    def _busy(self) -> bool:
        return any(q.active for q in self._queues.values())

    async def wait_for_work(self, queue: MemoryQueue) -> None:
        """Wait for work on ``queue``; jump the clock when nothing at all is running."""
        due = queue.next_due(self.clock.now_ms())
        if due is None:
            await queue.changed(None)
            return
        for _ in range(_SETTLE_TURNS):
            await asyncio.sleep(0)
        now = self.clock.now_ms()
        if queue.next_due(now) != due or queue.runnable(now):
            return
        now = self.clock.now_ms()
        # Never jump to a scheduler's run: an endless schedule would spin the clock.
        jump = _earliest(queue.next_plain_due(), self._limit_end(queue, now))
        if (self.autojump and not self._advancing and not self._busy() and jump is not None
                and jump > now):
            self.clock.advance(jump - now)
            for other in self._queues.values():  # their waits were computed on the old time
                other.notify()
            return
        await queue.changed(max(0.0, (due - now) / 1000))

    async def advance(self, ms: float) -> None:
        """Move the clock ``ms`` forward, running every job that falls due on the way in
        order (scheduler runs, delayed jobs, retry backoffs), then return once the
        workers are idle. Queues without a running worker keep their due jobs waiting."""
        if ms < 0:
            raise ValueError(f"a clock only moves forward; got {ms} ms")
        target = self.clock.now_ms() + ms
        self._advancing = True
        try:
            while True:
                await self._settle()
                # Only what falls due later: a due job of a queue without a worker stays
                # due (and must not keep this loop from moving on).
                now = self.clock.now_ms()
                due = _earliest(*(_earliest(q.next_due_after(now), self._limit_end(q, now))
                                  for q in self._queues.values()))
                if due is None or due > target:
                    break
                self.clock.advance(due - now)
                self._notify_all()
            remaining = target - self.clock.now_ms()
            if remaining > 0:
                self.clock.advance(remaining)
            self._notify_all()
            await self._settle()
        finally:
            self._advancing = False

    def _notify_all(self) -> None:
        for queue in self._queues.values():
            queue.notify()

    async def _settle(self) -> None:
        """Return when no worker has a job running or a job it could take now."""
        turns = 0
        while True:
            for _ in range(_SETTLE_TURNS):
                await asyncio.sleep(0)
            if not self._has_work():
                return
            turns += 1
            if turns > 1000:  # a processor awaiting real I/O: stop burning the CPU
                await asyncio.sleep(0.001)

    def _has_work(self) -> bool:
        now = self.clock.now_ms()
        for name, queue in self._queues.items():
            if queue.active:
                return True
            worker = self._workers.get(name)
            due = queue.next_due(now)
            if worker is not None and worker.running and (
                    queue.runnable(now) or (due is not None and due <= now)):
                return True
        return False

    @staticmethod
    def _limit_end(queue: MemoryQueue, now: int) -> int | None:
        """When a rate limit holding back waiting jobs ends (None when none does)."""
        if not (queue.waiting or queue.prioritized):
            return None
        return queue.limit_end(now) or None

    def store_job(self, job: PreparedJob, job_id: str | None = None,
                  created_ms: int | None = None) -> str:
        """Write a validated job (under ``job_id`` when given, created at ``created_ms``,
        else now); return its id."""
        queue = self.queue_store(job.queue)
        custom = job.options.job_id
        if custom is not None and custom in queue.jobs:
            return custom
        if job_id is None:
            job_id = custom if custom is not None else str(next(queue.ids))
        now = self.clock.now_ms() if created_ms is None else created_ms
        stored = StoredJob(id=job_id, name=job.name, data=copy_json(job.wire),
                           options=job.options, timestamp=now,
                           trace_metadata=job.trace_metadata)
        queue.jobs[job_id] = stored
        delay = job.options.delay
        queue.enqueue(stored, now, delay)
        queue.emit(EventType.DELAYED if delay > 0 else EventType.WAITING, stored,
                   delay if delay > 0 else None)
        return job_id

    async def _start_add(self, job: PreparedJob, created_ms: int) -> str:
        job_id = self.store_job(job, created_ms=created_ms)
        self.queue_store(job.queue).notify()
        return job_id

    async def _start_add_bulk(self, jobs: Sequence[PreparedJob], created_ms: int) -> list[str]:
        ids = [self.store_job(job, created_ms=created_ms) for job in jobs]
        self.queue_store(jobs[0].queue).notify()
        return ids

    async def _add_flow(self, entries: Sequence[FlowEntry]) -> None:
        self.flows.add(entries)

    async def _get_raw_flow(self, queue: str, job_id: str) -> RawFlow | None:
        return self.flows.raw_flow(queue, job_id)

    async def _cancel_job(self, queue: str, job_id: str) -> bool:
        store = self.queue_store(queue)
        job = store.jobs.get(job_id)
        if job is None:
            return False
        if job.state in ("waiting", "prioritized", "delayed"):
            del store.jobs[job_id]  # a stale id in waiting/prioritized is skipped by take()
            if job.state == "delayed":  # but a delayed one would still set the next wake-up
                store.delayed = [entry for entry in store.delayed if entry[2] != job_id]
                heapq.heapify(store.delayed)
            job.state = "removed"
            self.flows.removed(queue, job)
            store.release_dedup(job, finished=False)
            store.notify()
            return True
        worker = self._workers.get(queue)
        if job.state == "active" and isinstance(worker, BaseWorker):
            return worker.cancel_running(job_id, remember=False)
        return False

    def _start_worker(self, queue: str, processor: Processor, concurrency: int) -> QueueWorker:
        return MemoryWorker(self, queue, processor, concurrency)

    async def _get_raw_job(self, queue: str, job_id: str) -> RawJob | None:
        job = self.queue_store(queue).jobs.get(job_id)
        return None if job is None else job.raw()

    async def get_job_logs(self, queue: str, job_id: str) -> list[str]:
        """The lines a processor logged for the job."""
        job = self.queue_store(str(queue)).jobs.get(str(job_id))
        return [] if job is None else list(job.logs)

    async def _get_counts(self, queue: str) -> dict[str, int]:
        return self.queue_store(queue).counts()

    async def _get_raw_jobs(self, queue: str, state: str, limit: int) -> list[RawJob]:
        return [job.raw() for job in self.queue_store(queue).listed(state)[:limit]]

    async def _retry_failed(self, queue: str) -> int:
        return self.queue_store(queue).retry_failed()

    async def _stored_queues(self) -> set[str]:
        return {name for name, queue in self._queues.items() if queue.jobs}

    async def _count_workers(self, queue: str) -> int:
        worker = self._workers.get(queue)
        return 1 if worker is not None and worker.running else 0

    async def _watch_job(self, queue: str, job_id: str) -> JobWatch:
        return QueueChangeWatch(self.queue_store(queue))

    async def _health_backend(self) -> tuple[str, str]:
        return "ok", "closed"

    def _make_rate_limiter(self) -> RateLimiter:
        return MemoryRateLimiter(self.settings.security.rate_limits, self.clock.now_ms)

    async def _upsert_job_scheduler(self, spec: SchedulerSpec) -> JobSchedulerInfo:
        return self.schedules.upsert(spec)

    async def _get_job_schedulers(self, queue: str) -> list[JobSchedulerInfo]:
        return self.schedules.get_all(queue)

    async def _get_job_scheduler(self, queue: str, scheduler_id: str) -> JobSchedulerInfo | None:
        return self.schedules.get(queue, scheduler_id)

    async def _remove_job_scheduler(self, queue: str, scheduler_id: str) -> bool:
        return self.schedules.remove(queue, scheduler_id)

    async def _declared_schedulers(self) -> set[tuple[str, str]]:
        return set(self.schedules.declared)

    async def _record_declared(self, current: set[tuple[str, str]],
                               stale: set[tuple[str, str]]) -> None:
        self.schedules.declared = (self.schedules.declared | current) - stale

    def _event_stream(self, queue: str) -> EventStream:
        return MemoryEventStream(self.queue_store(queue))

    # -- controls and deduplication (queuekit.memory.controls) -------------------------

    async def _add_dedup(self, job: PreparedJob) -> tuple[str, bool]:
        return self._controls.add_dedup(job)

    async def _get_dedup_job_id(self, queue: str, dedup_id: str) -> str | None:
        return self._controls.dedup_job_id(queue, dedup_id)

    async def _set_paused(self, queue: str, paused: bool) -> None:
        self._controls.set_paused(queue, paused)

    async def _is_paused(self, queue: str) -> bool:
        return self.queue_store(queue).paused

    async def _remove_job(self, queue: str, job_id: str) -> bool:
        return self._controls.remove_job(queue, job_id)

    async def _clean(self, queue: str, state: str, grace_ms: int, limit: int) -> list[str]:
        return self._controls.clean(queue, state, grace_ms, limit)

    async def _drain(self, queue: str) -> None:
        self._controls.drain(queue)

    async def _obliterate(self, queue: str, force: bool) -> None:
        self._controls.obliterate(queue, force)

    async def _set_global_concurrency(self, queue: str, n: int | None) -> None:
        store = self.queue_store(queue)
        store.concurrency = n
        store.notify()

    async def _get_global_concurrency(self, queue: str) -> int | None:
        return self.queue_store(queue).concurrency

    async def _close_backend(self) -> None:
        for queue in self._queues.values():
            queue.notify()
