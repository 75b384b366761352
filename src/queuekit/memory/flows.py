"""Flows in memory, as BullMQ's scripts run them (``addParentJob``, ``moveToFinished``'s
``updateParentDepsIfNeeded`` / ``moveChildFromDependenciesIfNeeded``, ``removeJob``).

Child keys are BullMQ's job keys (``<prefix>:<queue>:<id>``, the prefix of
``redis.prefix``), so ``get_children_values`` and failed reasons read as on Redis.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from queuekit.events import EventType
from queuekit.flows import FlowEntry, RawFlow, parse_job_key
from queuekit.memory.store import FlowDeps, MemoryQueue, StoredJob, copy_json

if TYPE_CHECKING:
    from queuekit.memory.service import InMemoryQueueService


class MemoryFlows:
    """The flow side of one in-memory service."""

    def __init__(self, service: InMemoryQueueService) -> None:
        self._service = service
        self._prefix = service.settings.redis.prefix

    def key(self, queue: str, job_id: str) -> str:
        return f"{self._prefix}:{queue}:{job_id}"

    def _job(self, ref: tuple[str, str]) -> tuple[MemoryQueue, StoredJob | None]:
        queue = self._service.queue_store(ref[0])
        return queue, queue.jobs.get(ref[1])

    def add(self, entries: Sequence[FlowEntry]) -> None:
        """Store a validated flow (parents come before their children)."""
        now = self._service.clock.now_ms()
        touched: dict[str, MemoryQueue] = {}
        for entry in entries:
            queue = touched.setdefault(entry.job.queue,
                                       self._service.queue_store(entry.job.queue))
            job = StoredJob(id=entry.job_id, name=entry.job.name,
                            data=copy_json(entry.job.wire), options=entry.job.options,
                            timestamp=now, parent=entry.parent,
                            trace_metadata=entry.job.trace_metadata)
            queue.jobs[job.id] = job
            if entry.parent is not None:
                _, parent = self._job(entry.parent)
                if parent is not None and parent.deps is not None:
                    parent.deps.pending.add(self.key(queue.name, job.id))
            if entry.has_children:
                job.state = "waiting-children"
                job.deps = FlowDeps()
                continue
            delay = job.options.delay
            queue.enqueue(job, now, delay)
            queue.emit(EventType.DELAYED if delay > 0 else EventType.WAITING, job,
                       delay if delay > 0 else None)
        for queue in touched.values():
            queue.notify()

    def completed(self, queue: str, job: StoredJob) -> None:
        """A child completed: record its value; the parent runs when none is pending."""
        if job.parent is None:
            return
        parent_queue, parent = self._job(job.parent)
        if parent is None or parent.deps is None:
            return
        key = self.key(queue, job.id)
        if key in parent.deps.pending:
            parent.deps.pending.discard(key)
            parent.deps.processed[key] = copy_json(job.return_value)
            if not parent.deps.pending:
                self._to_wait(parent_queue, parent)

    def failed(self, queue: str, job: StoredJob) -> None:
        """A child failed for good: its options say what happens to the parent."""
        if job.parent is None:
            return
        parent_queue, parent = self._job(job.parent)
        if parent is None or parent.deps is None:
            return
        deps, options = parent.deps, job.options
        key = self.key(queue, job.id)
        if key not in deps.pending:
            return
        if options.fail_parent_on_failure:
            deps.pending.discard(key)
            deps.unsuccessful[key] = self._service.clock.now_ms()
            if parent.state in ("waiting-children", "delayed"):
                parent.deferred_failure = f"child {key} failed"
                self._to_wait(parent_queue, parent, delay=False)
            elif parent.state != "failed":
                parent.deferred_failure = f"child {key} failed"
        elif options.ignore_dependency_on_failure or options.remove_dependency_on_failure:
            deps.pending.discard(key)
            if options.ignore_dependency_on_failure:
                deps.failed[key] = job.failed_reason or ""
            if not deps.pending:
                self._to_wait(parent_queue, parent)
        # No option: the child stays a dependency and the parent keeps waiting (BullMQ).

    def removed(self, queue: str, job: StoredJob) -> None:
        """A child was removed: it is no dependency any more (``removeJob``)."""
        if job.parent is None:
            return
        parent_queue, parent = self._job(job.parent)
        if parent is None or parent.deps is None:
            return
        parent.deps.pending.discard(self.key(queue, job.id))
        if not parent.deps.pending:
            self._to_wait(parent_queue, parent, delay=False)  # removeJob: straight to wait

    def _to_wait(self, queue: MemoryQueue, parent: StoredJob, delay: bool = True) -> None:
        if parent.state not in ("waiting-children", "delayed"):
            return
        now = self._service.clock.now_ms()
        queue.enqueue(parent, now, parent.options.delay if delay else 0)
        queue.emit(EventType.DELAYED if parent.state == "delayed" else EventType.WAITING,
                   parent)
        queue.notify()

    def children_values(self, job: StoredJob) -> dict[str, object]:
        return {} if job.deps is None else copy_json(job.deps.processed)

    def raw_flow(self, queue: str, job_id: str) -> RawFlow | None:
        job = self._service.queue_store(queue).jobs.get(job_id)
        if job is None:
            return None
        flow = RawFlow(queue, job.raw())
        deps = job.deps
        if deps is not None:
            keys = [*deps.pending, *deps.processed, *deps.failed, *deps.unsuccessful]
            for key in dict.fromkeys(keys):
                ref = parse_job_key(self._prefix, key)
                child = None if ref is None else self.raw_flow(*ref)
                if child is not None:
                    flow.children.append(child)
            flow.children.sort(key=lambda c: (c.job.timestamp, c.queue, c.job.id))
        return flow
