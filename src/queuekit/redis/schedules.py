"""Job schedulers on Redis, through bullmq's ``JobScheduler`` and BullMQ's own scripts.

``addJobScheduler`` writes the ``<prefix>:<queue>:repeat`` sorted set, the
``repeat:<id>`` hash and the first run ``repeat:<id>:<millis>`` exactly as Node BullMQ 6
does, so Node's ``getJobSchedulers()`` lists queuekit's schedulers and runs them, and
queuekit's workers run Node's. BullMQ's Lua never produces the next run by itself: the
worker that fetches a run advances its scheduler (:class:`SchedulerAdvancer`, Node's
``Worker.nextJobFromJobData``), with the run's job id as producer id, so a retried run
or a second worker never produces a second one.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import msgpack
from bullmq.job_scheduler import JobScheduler

from queuekit.redis.keys import UPDATE_SCHEDULER_KEYS, declared_schedules_key
from queuekit.redis.wire import (
    bullmq_options,
    repeat_options,
    scheduler_fields,
    with_trace_metadata,
)
from queuekit.schedules import JobSchedulerInfo, SchedulerSpec, next_cron_run, scheduler_data

if TYPE_CHECKING:
    from queuekit.redis.service import RedisQueueService

log = logging.getLogger("queuekit.redis")


def _millis(value: Any) -> int | None:
    if value is None or value == "" or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return int(value)
    try:
        return int(value)
    except ValueError:  # Node may store an ISO date
        return int(dt.datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
                   * 1000)


def repeat_strategy(millis: int, opts: dict[str, Any]) -> int | None:
    """bullmq's ``repeat_strategy`` hook: the next run of a cron scheduler after ``millis``
    (queuekit's :func:`next_cron_run`, right across DST changes, instead of bullmq's)."""
    pattern = opts.get("pattern")
    if not pattern:
        return None
    if opts.get("immediately"):
        return int(time.time() * 1000)
    nxt = next_cron_run(pattern, opts.get("tz"), millis, _millis(opts.get("startDate")))
    end = _millis(opts.get("endDate"))
    return None if end is not None and nxt > end else nxt  # as cron-parser: none past it


def job_scheduler(queue: Any) -> Any:
    """bullmq's ``JobScheduler`` of a queue (anything with a ``backend``), on our cron step."""
    return JobScheduler(queue, repeat_strategy=repeat_strategy)


class RedisSchedules:
    """The scheduler hooks of :class:`RedisQueueService`."""

    def __init__(self, service: RedisQueueService) -> None:
        self._service = service
        self._schedulers: dict[str, Any] = {}

    def _scheduler(self, queue: str) -> Any:
        scheduler = self._schedulers.get(queue)
        if scheduler is None:
            scheduler = self._schedulers[queue] = job_scheduler(self._service.get_queue(queue))
        return scheduler

    async def upsert(self, spec: SchedulerSpec) -> JobSchedulerInfo:
        scheduler = self._scheduler(spec.queue)
        repeat = repeat_options(spec.every, spec.pattern, spec.tz, spec.limit,
                                spec.start_date, spec.end_date, spec.immediately)
        template = dict(with_trace_metadata(bullmq_options(spec.job.options),
                                            spec.job.trace_metadata))

        async def write() -> JobSchedulerInfo | None:
            await scheduler.upsertJobScheduler(spec.id, repeat, spec.name, spec.job.wire,
                                               template, override=True)
            return await self._read(spec.queue, scheduler, spec.id)

        info = await self._service.breaker.call(write)
        assert info is not None, "a scheduler that was just written is missing"
        return info

    async def get_all(self, queue: str) -> list[JobSchedulerInfo]:
        scheduler = self._scheduler(queue)
        records: list[dict[str, Any]] = await self._service.breaker.call(
            scheduler.getJobSchedulers)
        return [self._info(queue, record) for record in records if record.get("name")]

    async def get(self, queue: str, scheduler_id: str) -> JobSchedulerInfo | None:
        scheduler = self._scheduler(queue)
        return await self._service.breaker.call(lambda: self._read(queue, scheduler,
                                                                   scheduler_id))

    async def remove(self, queue: str, scheduler_id: str) -> bool:
        scheduler = self._scheduler(queue)
        missing = await self._service.breaker.call(
            lambda: scheduler.removeJobScheduler(scheduler_id))
        return int(missing) == 0  # the script answers 0 when it removed one, as in Node

    async def declared(self) -> set[tuple[str, str]]:
        client, key = self._service.connection.client, declared_schedules_key(
            self._service.prefix)
        members = await self._service.breaker.call(lambda: client.smembers(key))
        found = set()
        for member in members:
            queue, _, scheduler_id = str(member).partition(":")  # queue names have no ':'
            found.add((queue, scheduler_id))
        return found

    async def record_declared(self, current: set[tuple[str, str]],
                              stale: set[tuple[str, str]]) -> None:
        client, key = self._service.connection.client, declared_schedules_key(
            self._service.prefix)

        async def write() -> None:
            async with client.pipeline(transaction=True) as pipe:
                if current:
                    pipe.sadd(key, *(f"{q}:{i}" for q, i in current))
                if stale:
                    pipe.srem(key, *(f"{q}:{i}" for q, i in stale))
                await pipe.execute()

        if current or stale:
            await self._service.breaker.call(write)

    async def _read(self, queue: str, scheduler: Any, scheduler_id: str
                    ) -> JobSchedulerInfo | None:
        try:
            record = await scheduler.getScheduler(scheduler_id)
        except ValueError:  # bullmq 3.4 on an id it does not know
            return None
        return None if not record else self._info(queue, record)

    def _info(self, queue: str, record: dict[str, Any]) -> JobSchedulerInfo:
        fields = scheduler_fields(record)
        fields["data"] = scheduler_data(self._service.registry, queue, fields["data"])
        limit, ic, end = fields["limit"], fields["iteration_count"], fields["end_date"]
        nxt = fields["next_run_at"]
        # BullMQ keeps a stopped scheduler's record, its score at the last run: no next run.
        stopped = (limit is not None and ic >= limit) or (end is not None
                                                          and end < time.time() * 1000)
        if stopped and nxt is not None and nxt <= time.time() * 1000:
            fields["next_run_at"] = None
        return JobSchedulerInfo(queue=queue, **fields)


ScriptCall = Callable[[str, list[str], list[Any]], Awaitable[Any]]


def next_run_opts(scheduler_id: str, opts: dict[str, Any], due: int | None,
                  now: int) -> tuple[int, dict[str, Any]] | None:
    """What bullmq's ``JobScheduler.upsertJobScheduler(override=False)`` sends to
    ``updateJobScheduler`` for the run after one with ``opts`` (due at ``due``): the next
    millis (``every``: recomputed by the script) and the next run's options; None when
    ``limit`` or ``end_date`` stop the scheduler."""
    repeat = {k: v for k, v in (opts.get("repeat") or {}).items() if k != "immediately"}
    every, limit = repeat.get("every"), repeat.get("limit")
    count = int(repeat.get("count") or 0) + 1
    if limit is not None and count > int(limit):
        return None
    end = _millis(repeat.get("endDate"))
    if end is not None and (now > end or (every and due is not None
                                          and due + int(every) > end)):
        return None  # bullmq's Lua would add an `every` run past the end date
    base = max(now, int(opts.get("prevMillis") or 0))
    nxt: int | None = None
    if repeat.get("pattern"):
        nxt = repeat_strategy(base, repeat)
        if nxt is None:
            return None
        nxt = max(nxt, base)
    offset = repeat.get("offset") if every and repeat.get("offset") else None
    base_next = nxt or base
    merged_repeat = {**repeat, "offset": offset, "count": count,
                     "startDate": _millis(repeat.get("startDate")), "endDate": end}
    merged = {**opts, "jobId": f"repeat:{scheduler_id}:{base_next}",
              "delay": max(base_next + (offset or 0) - now, 0), "timestamp": now,
              "prevMillis": base_next, "repeatJobKey": scheduler_id,
              "repeat": {k: v for k, v in merged_repeat.items() if v is not None}}
    return base_next, merged


class SchedulerAdvancer:
    """Produce the next run of the scheduler of a fetched job, as Node's worker does in
    ``nextJobFromJobData`` (for jobs from ``moveToActive`` and from fetch-next): BullMQ's
    ``updateJobScheduler`` with the run's id as producer id, so a retried run or a run
    that is not the scheduler's current one produces nothing.

    ``call`` sends the script (the fast engine: through its auto-pipeline, batched with
    the other slots' calls); by default bullmq's own script object runs it.
    """

    def __init__(self, scripts: Any, queue: str, call: ScriptCall | None = None) -> None:
        self._scripts = scripts
        self._queue = queue
        self._call = call or self._direct

    async def _direct(self, name: str, keys: list[str], args: list[Any]) -> Any:
        return await self._scripts.commands[name](keys=keys, args=args)

    async def __call__(self, job: Any) -> None:
        scheduler_id = getattr(job, "repeatJobKey", None)
        if not scheduler_id:
            return
        job_id = str(job.id)
        due = job_id.rsplit(":", 1)[-1]  # repeat:<id>:<millis this run was due>
        now = int(time.time() * 1000)
        try:
            found = next_run_opts(scheduler_id, dict(job.opts or {}),
                                  int(due) if due.isdigit() else None, now)
            if found is None:
                return
            next_millis, opts = found
            scripts = self._scripts
            keys = [*scripts.getKeys(list(UPDATE_SCHEDULER_KEYS)), scripts.toKey(job_id),
                    scripts.keys["active"]]
            # ARGV[3] (the template data) is not read by the script: the hash has it.
            args = [next_millis, scheduler_id, "{}",
                    msgpack.packb(scripts.encodeOpts(opts), use_bin_type=True), now,
                    scripts.keys[""], job_id]
            await self._call("updateJobScheduler", keys, args)
        except Exception as exc:
            # As Node's worker: the fetched run still runs; the next one is not produced.
            log.error("job %s on %s: the next run of scheduler %s could not be added: %s",
                      job_id, self._queue, scheduler_id, exc,
                      extra={"queue": self._queue, "job_id": job_id,
                             "scheduler_id": scheduler_id})
