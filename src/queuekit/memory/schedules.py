"""Job schedulers of the in-memory backend, on its virtual clock.

The same rules as BullMQ's scripts and worker: one pending run ``repeat:<id>:<millis>``
per scheduler; the run's fetch produces the next one (only when the fetched job is the
scheduler's current run, so a retry never produces a second); ``every`` follows
``getJobSchedulerEveryNextMillis`` (first run now, then prev + every, realigned after
a gap); ``pattern`` the cron step of :func:`queuekit.schedules.next_cron_run`;
``iteration_count`` counts the jobs produced and ``limit`` is checked against the run's
own count. Scheduler runs are never what the idle clock jumps to (that would spin
through an endless schedule): they fall due in real time or in ``advance(ms)``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

from queuekit.memory.store import MemoryQueue, StoredJob
from queuekit.schedules import JobSchedulerInfo, SchedulerSpec, next_cron_run, scheduler_data

if TYPE_CHECKING:
    from queuekit.memory.service import InMemoryQueueService

#: Slots an ``every`` scheduler scans past taken job ids (BullMQ's script: 32).
_MAX_SLOT_SCANS = 32


@dataclass
class _Scheduler:
    spec: SchedulerSpec
    next_millis: int
    offset: int
    iteration_count: int


def every_next(prev: int | None, every: int, now: int, offset: int,
               start_date: int | None) -> tuple[int, int]:
    """BullMQ's ``getJobSchedulerEveryNextMillis``: (next run, offset)."""
    if prev is None:
        if start_date is not None:
            nxt = max(start_date, now)
        elif offset > 0:
            nxt = now // every * every + offset
            if nxt <= now:
                nxt += every
        else:
            nxt = now
    else:
        nxt = prev + every
        if nxt < now:
            aligned = now // every * every + offset
            nxt = aligned + every if aligned <= now else aligned
    if not offset:
        offset = nxt - nxt // every * every
    return nxt, offset


def run_id(scheduler_id: str, millis: int) -> str:
    """The job id of a scheduler's run due at ``millis`` (BullMQ's)."""
    return f"repeat:{scheduler_id}:{millis}"


class MemorySchedules:
    """The schedulers of every in-memory queue."""

    def __init__(self, service: InMemoryQueueService) -> None:
        self._service = service
        self._schedulers: dict[str, dict[str, _Scheduler]] = {}
        #: (queue, id) of the schedulers declared in configuration.
        self.declared: set[tuple[str, str]] = set()

    def _of(self, queue: str) -> dict[str, _Scheduler]:
        return self._schedulers.setdefault(queue, {})

    def upsert(self, spec: SchedulerSpec) -> JobSchedulerInfo:
        store = self._service.queue_store(spec.queue)
        now = self._service.clock.now_ms()
        existing = self._of(spec.queue).get(spec.id)
        offset = existing.offset if existing is not None else 0
        updated_every = False
        if spec.every is not None:
            prev = existing.next_millis if existing is not None else None
            if existing is not None and existing.spec.every != spec.every:
                prev, updated_every = None, True
            nxt, new_offset = every_next(prev, spec.every, now, offset, spec.start_date)
        else:
            assert spec.pattern is not None
            nxt = now if spec.immediately else max(
                next_cron_run(spec.pattern, spec.tz, now, spec.start_date), now)
            new_offset = offset
        removed_prev = False
        if existing is not None:
            removed_prev = self._remove_pending(store, run_id(spec.id, existing.next_millis))
        if removed_prev and spec.every is not None and not updated_every:
            assert existing is not None
            nxt = existing.next_millis
        else:
            offset = new_offset
        if run_id(spec.id, nxt) in store.jobs and spec.every is not None:
            for _ in range(_MAX_SLOT_SCANS):
                nxt += spec.every
                if run_id(spec.id, nxt) not in store.jobs:
                    break
        count = existing.iteration_count if existing is not None else 1
        record = _Scheduler(spec, nxt, offset, count)
        self._of(spec.queue)[spec.id] = record
        self._add_run(store, record, repeat_count=1, now=now)
        return self._info(record)

    def _remove_pending(self, store: MemoryQueue, job_id: str) -> bool:
        job = store.jobs.get(job_id)
        if job is None or job.state not in ("delayed", "waiting", "prioritized"):
            return False
        del store.jobs[job_id]  # the heaps and the deque skip ids that are gone
        return True

    def _add_run(self, store: MemoryQueue, record: _Scheduler, repeat_count: int,
                 now: int) -> None:
        spec = record.spec
        options = dataclasses.replace(spec.job.options, delay=max(record.next_millis - now, 0),
                                      job_id=run_id(spec.id, record.next_millis))
        job_id = self._service.store_job(dataclasses.replace(spec.job, options=options))
        stored = store.jobs[job_id]
        stored.scheduler, stored.repeat_count = spec.id, repeat_count
        store.notify()

    def on_fetched(self, store: MemoryQueue, job: StoredJob) -> None:
        """A worker took ``job``: if it is a scheduler's current run, add the next."""
        if job.scheduler is None:
            return
        record = self._of(store.name).get(job.scheduler)
        if record is None or job.id != run_id(record.spec.id, record.next_millis):
            return
        spec, now = record.spec, self._service.clock.now_ms()
        count = job.repeat_count + 1
        if spec.limit is not None and count > spec.limit:
            return
        if spec.end_date is not None and now > spec.end_date:
            return
        if spec.every is not None:
            nxt, _ = every_next(record.next_millis, spec.every, now, record.offset,
                                spec.start_date)
            if spec.end_date is not None and record.next_millis + spec.every > spec.end_date:
                return
        else:
            assert spec.pattern is not None
            nxt = max(next_cron_run(spec.pattern, spec.tz, max(now, record.next_millis),
                                    spec.start_date), now)
            if spec.end_date is not None and nxt > spec.end_date:
                return
        if run_id(spec.id, nxt) in store.jobs:
            return  # BullMQ emits `duplicated` and adds nothing
        record.next_millis = nxt
        record.iteration_count += 1
        self._add_run(store, record, repeat_count=count, now=now)

    def get_all(self, queue: str) -> list[JobSchedulerInfo]:
        records = sorted(self._of(queue).values(), key=lambda r: r.next_millis, reverse=True)
        return [self._info(record) for record in records]

    def get(self, queue: str, scheduler_id: str) -> JobSchedulerInfo | None:
        record = self._of(queue).get(scheduler_id)
        return None if record is None else self._info(record)

    def remove(self, queue: str, scheduler_id: str) -> bool:
        record = self._of(queue).pop(scheduler_id, None)
        if record is None:
            return False
        store = self._service.queue_store(queue)
        job = store.jobs.get(run_id(scheduler_id, record.next_millis))
        if job is not None and job.state == "delayed":  # as BullMQ: only a delayed run goes
            del store.jobs[job.id]
            store.notify()
        return True

    def count(self, queue: str) -> int:
        """How many schedulers ``queue`` has."""
        return len(self._of(queue))

    def _info(self, record: _Scheduler) -> JobSchedulerInfo:
        spec = record.spec
        store = self._service.queue_store(spec.queue)
        job = store.jobs.get(run_id(spec.id, record.next_millis))
        pending = job is not None and job.state in ("delayed", "waiting", "prioritized")
        stopped = ((spec.limit is not None and record.iteration_count >= spec.limit)
                   or (spec.end_date is not None
                       and spec.end_date < self._service.clock.now_ms()))
        return JobSchedulerInfo(
            id=spec.id, queue=spec.queue, name=spec.name, every=spec.every,
            pattern=spec.pattern, tz=spec.tz, limit=spec.limit,
            iteration_count=record.iteration_count,
            next_run_at=None if stopped and not pending else record.next_millis,
            start_date=spec.start_date, end_date=spec.end_date,
            data=scheduler_data(self._service.registry, spec.queue, spec.job.wire))
