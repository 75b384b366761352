"""Queue controls and deduplication in memory, mirroring BullMQ's scripts on the
virtual clock (deduplication windows expire on it too)."""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

from queuekit.errors import JobActiveError
from queuekit.events import EventType
from queuekit.memory.store import MemoryQueue
from queuekit.records import PreparedJob

if TYPE_CHECKING:
    from queuekit.memory.service import InMemoryQueueService

#: The states a ``drain`` empties.
_DRAINED = ("waiting", "prioritized", "delayed")


class MemoryControls:
    """The in-memory side of :class:`~queuekit.controls.ControlsMixin`."""

    def __init__(self, service: InMemoryQueueService) -> None:
        self._service = service

    def _now(self) -> int:
        return self._service.clock.now_ms()

    # -- deduplication (BullMQ's deduplicateJob, step by step) -----------------------

    def _entry(self, queue: MemoryQueue, dedup_id: str) -> tuple[str, int | None] | None:
        entry = queue.dedup.get(dedup_id)
        if entry is not None and entry[1] is not None and entry[1] <= self._now():
            del queue.dedup[dedup_id]  # the key's ttl ran out
            return None
        return entry

    def add_dedup(self, job: PreparedJob) -> tuple[str, bool]:
        service, dedup = self._service, job.options.deduplication
        assert dedup is not None
        queue = service.queue_store(job.queue)
        custom = job.options.job_id
        if custom is not None and custom in queue.jobs:
            return custom, True
        # The id is taken before deduplication, as BullMQ's add script does.
        new_id = custom if custom is not None else str(next(queue.ids))
        now = self._now()
        fresh_expiry = now + dedup.ttl if dedup.ttl else None
        entry = self._entry(queue, dedup.id)
        stale = entry is not None and entry[1] is None and entry[0] not in queue.jobs
        event = {"deduplication_id": dedup.id}
        if entry is not None and not stale:
            current_id, expires = entry
            current = queue.jobs.get(current_id)
            if not dedup.replace:
                if dedup.ttl and dedup.extend:
                    queue.dedup[dedup.id] = (current_id, fresh_expiry)
                queue.emit_for(EventType.DEDUPLICATED, current_id,
                               {**event, "deduplicated_job_id": new_id})
                return current_id, True
            if current is None or current.state != "delayed":
                return current_id, True  # BullMQ replaces only a job still delayed
            queue.remove(current_id)
            queue.emit_for(EventType.DEDUPLICATED, new_id,
                           {**event, "deduplicated_job_id": current_id})
            keep_ttl = bool(dedup.ttl) and not dedup.extend
            queue.dedup[dedup.id] = (new_id, expires if keep_ttl else fresh_expiry)
        else:
            queue.dedup[dedup.id] = (new_id, fresh_expiry)
        service.store_job(job, new_id)
        queue.notify()
        return new_id, False

    def dedup_job_id(self, queue: str, dedup_id: str) -> str | None:
        entry = self._entry(self._service.queue_store(queue), dedup_id)
        return None if entry is None else entry[0]

    # -- pause and removal -----------------------------------------------------------

    def set_paused(self, queue: str, paused: bool) -> None:
        store = self._service.queue_store(queue)
        store.paused = paused
        store.notify()

    def _remove(self, queue: str, job_id: str) -> None:
        job = self._service.queue_store(queue).remove(job_id)
        if job is not None:  # a flow child is no dependency of its parent any more
            self._service.flows.removed(queue, job)

    def remove_job(self, queue: str, job_id: str) -> bool:
        store = self._service.queue_store(queue)
        job = store.jobs.get(job_id)
        if job is None:
            return False
        if job.state == "active":
            raise JobActiveError(
                f"job {job_id!r} on queue {queue!r} is active (a worker holds its lock); "
                "wait for it to finish, then remove it")
        self._remove(queue, job_id)
        store.notify()
        return True

    def clean(self, queue: str, state: str, grace_ms: int, limit: int) -> list[str]:
        store, cutoff = self._service.queue_store(queue), self._now() - grace_ms
        finished = state in ("completed", "failed")
        candidates = sorted(
            (job for job in store.jobs.values() if job.state == state),
            key=lambda job: job.finished_on if finished else job.timestamp)
        removed: list[str] = []
        for job in candidates:
            if limit and len(removed) >= limit:
                break
            if (job.finished_on if finished else job.timestamp) <= cutoff:
                self._remove(queue, job.id)
                removed.append(job.id)
        store.notify()
        return removed

    def drain(self, queue: str) -> None:
        store = self._service.queue_store(queue)
        for job in [j for j in store.jobs.values() if j.state in _DRAINED]:
            self._remove(queue, job.id)
        store.notify()

    def obliterate(self, queue: str, force: bool) -> None:
        store = self._service.queue_store(queue)
        if store.active and not force:
            raise JobActiveError(
                f"queue {queue!r} has active jobs; obliterate it when they have finished, "
                "or pass force=True")
        for job_id in list(store.jobs):
            self._remove(queue, job_id)
        limiter = store.limiter  # worker configuration, not queue state
        store.reset_controls()
        store.limiter = limiter
        store.ids = itertools.count(1)
        store.notify()
