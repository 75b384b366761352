"""The in-memory backend's side of the worker template: take, complete, fail, put back."""

from __future__ import annotations

import asyncio
import logging
import traceback
from typing import TYPE_CHECKING, Any

from queuekit.events import EventType
from queuekit.jobs import JobReporter, Progress
from queuekit.memory.store import MemoryQueue, StoredJob, backoff_delay, copy_json
from queuekit.processors import Processor
from queuekit.records import RawJob
from queuekit.worker import BaseWorker, Failure

if TYPE_CHECKING:
    from queuekit.memory.service import InMemoryQueueService

log = logging.getLogger("queuekit.memory")


class _Reporter:
    def __init__(self, queue: MemoryQueue, job: StoredJob) -> None:
        self._queue = queue
        self._job = job

    async def update_progress(self, progress: Progress) -> None:
        self._job.progress = copy_json(progress)
        self._queue.emit(EventType.PROGRESS, self._job, progress)
        self._queue.notify()
        await asyncio.sleep(0)

    async def log(self, text: str) -> None:
        self._job.logs.append(text)
        await asyncio.sleep(0)


class MemoryWorker(BaseWorker[StoredJob]):
    """A worker of the in-memory service: ``concurrency`` jobs at once, in tasks."""

    _forced_close_note = "their jobs go back to waiting"

    def __init__(self, service: InMemoryQueueService, queue: str, processor: Processor,
                 concurrency: int) -> None:
        self._memory = service
        self._queue = service.queue_store(queue)
        self._queue.limiter = service.settings.worker.limiter.get(queue)
        super().__init__(service, queue, processor, concurrency)

    async def _fetch(self) -> StoredJob | None:
        clock = self._memory.clock
        while not self._closing:
            job = self._queue.take(clock.now_ms())
            if job is not None:
                job.state = "active"
                job.processed_on = clock.now_ms()
                self._queue.active.add(job.id)
                self._queue.emit(EventType.ACTIVE, job)
                self._memory.schedules.on_fetched(self._queue, job)
                return job
            await self._memory.wait_for_work(self._queue)
        return None

    def _raw(self, job: StoredJob) -> RawJob:
        return job.raw()

    def _reporter(self, job: StoredJob) -> JobReporter:
        return _Reporter(self._queue, job)

    def _gone(self, job: StoredJob) -> bool:
        """The job was removed while it ran (obliterate with force): nothing to record."""
        if self._queue.jobs.get(job.id) is job:
            return False
        self._queue.active.discard(job.id)
        log.warning("job %s on %s was removed while it ran; its outcome is dropped", job.id,
                    self.queue, extra={"queue": self.queue, "job_id": job.id})
        return True
    def _refusal(self, job: StoredJob) -> str | None:
        return job.deferred_failure

    async def _children_values(self, job: StoredJob) -> dict[str, Any]:
        return self._memory.flows.children_values(job)

    async def _complete(self, job: StoredJob, value: Any) -> None:
        queue, now = self._queue, self._memory.clock.now_ms()
        if self._gone(job):
            return
        queue.active.discard(job.id)
        queue.release_dedup(job, finished=True)
        job.attempts_made += 1
        job.state = "completed"
        job.return_value = copy_json(value)
        job.finished_on = now
        queue.completed.append(job.id)
        queue.emit(EventType.COMPLETED, job, job.return_value)
        self._memory.flows.completed(self.queue, job)
        queue.retain(queue.completed, job.options.remove_on_complete, now)
        queue.notify()
        self._log_completed(job.id)

    async def _fail(self, job: StoredJob, error: BaseException,
                    final: bool) -> Failure | None:
        queue, now = self._queue, self._memory.clock.now_ms()
        if self._gone(job):
            return None
        queue.active.discard(job.id)
        job.attempts_made += 1
        job.failed_reason = str(error)
        job.stacktrace = [*job.stacktrace, "".join(traceback.format_exception(error))][-10:]
        attempts = job.options.attempts
        if not final and job.attempts_made < attempts:
            delay = backoff_delay(job.options.backoff, job.attempts_made)
            queue.emit(EventType.FAILED, job, job.failed_reason, job.attempts_made, True)
            queue.emit(EventType.RETRYING, job, delay, job.attempts_made + 1)
            queue.enqueue(job, now, delay)
            queue.notify()
            return Failure(job.attempts_made, attempts, will_retry=True, retry_in_ms=delay)
        job.state = "failed"
        job.finished_on = now
        queue.release_dedup(job, finished=True)
        queue.failed.append(job.id)
        queue.emit(EventType.FAILED, job, job.failed_reason, job.attempts_made, False)
        self._memory.flows.failed(self.queue, job)
        queue.retain(queue.failed, job.options.remove_on_fail, now)
        queue.notify()
        return Failure(job.attempts_made, attempts, will_retry=False)

    async def _rate_limited(self, job: StoredJob, delay_ms: int) -> None:
        queue, now = self._queue, self._memory.clock.now_ms()
        queue.limited_until = max(queue.limited_until, now + delay_ms)
        if self._gone(job):
            return
        queue.active.discard(job.id)
        # Back where it runs next, attempts unchanged (BullMQ's moveJobFromActiveToWait).
        queue.enqueue(job, now, 0)
        if job.state == "waiting" and queue.waiting and queue.waiting[-1] == job.id:
            queue.waiting.rotate(1)
        queue.emit(EventType.WAITING, job)
        queue.notify()

    async def _abandon(self, job: StoredJob) -> None:
        # Like a stalled job on Redis, an interrupted job is not lost: it goes back.
        self._queue.active.discard(job.id)
        self._queue.enqueue(job, self._memory.clock.now_ms(), 0)
        self._queue.notify()
        log.warning("job %s on %s interrupted by shutdown; back to waiting", job.id,
                    self.queue, extra={"queue": self.queue, "job_id": job.id})
