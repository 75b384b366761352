"""The Redis implementation of ``QueueService``, on BullMQ's keys, scripts and format.

Jobs are stored in BullMQ's own format under the configured prefix (``queue``), so Node
BullMQ workers and dashboards read them. bullmq is untyped: its objects stay ``Any``
inside this package and never reach the public API.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any

import bullmq
from redis.exceptions import ResponseError

from queuekit.events import EventStream
from queuekit.flows import FlowEntry, RawFlow
from queuekit.jobs import COUNT_STATES, JobState
from queuekit.processors import Processor
from queuekit.queues import QueueRegistry
from queuekit.ratelimit import RateLimiter
from queuekit.records import PreparedJob, RawJob
from queuekit.redis.breaker import AsyncCircuitBreaker, make_breaker
from queuekit.redis.bullmq_engine import BullmqWorker
from queuekit.redis.cancel import cancel_job
from queuekit.redis.commands import AddJobCommand
from queuekit.redis.connection import QueueConnection
from queuekit.redis.controls import RedisControls
from queuekit.redis.events import RedisEventStream
from queuekit.redis.fast_engine import FastWorker
from queuekit.redis.final_reads import FinalReads
from queuekit.redis.flows import RedisFlows
from queuekit.redis.jobs import raw_from_bull, raw_from_hash
from queuekit.redis.keys import GET_STATE_KEYS, events_key, queue_key, rate_limit_key
from queuekit.redis.layout import KeyLayout
from queuekit.redis.ratelimit import RedisRateLimiter
from queuekit.redis.schedules import RedisSchedules
from queuekit.redis.waiters import JobWaiters, told
from queuekit.redis.wire import bullmq_options, with_trace_metadata
from queuekit.redis.worker import RedisWorker
from queuekit.schedules import JobSchedulerInfo, SchedulerSpec
from queuekit.service import QueueService
from queuekit.settings import QueuekitSettings
from queuekit.waiting import JobWatch
from queuekit.worker import QueueWorker

log = logging.getLogger("queuekit.redis")

#: The worker engines, by ``worker.engine``.
ENGINES: dict[str, type[RedisWorker]] = {"fast": FastWorker, "bullmq": BullmqWorker}
#: Failed jobs ``retry_jobs`` moves per script call (BullMQ's default batch).
_RETRY_BATCH = 1000


class RedisQueueService(QueueService):
    """``QueueService`` on BullMQ and Redis.

    Build it with a :class:`QueueConnection` that the container owns, or let it own one;
    call :meth:`start` (or use :meth:`connect`) to fail fast when Redis is unreachable.
    """

    backend = "redis"

    def __init__(
        self,
        settings: QueuekitSettings | None = None,
        registry: QueueRegistry | None = None,
        *,
        connection: QueueConnection | None = None,
        breaker: AsyncCircuitBreaker | None = None,
    ) -> None:
        super().__init__(settings, registry)
        self._owns_connection = connection is None
        self.connection = connection or QueueConnection(self.settings.redis)
        self.breaker = breaker or AsyncCircuitBreaker(
            make_breaker(self.settings.breaker), target=f"Redis at {self.connection.url}"
        )
        self._queues: dict[str, Any] = {}
        self.layout = KeyLayout(self.settings.redis)
        self._pipe = self.connection.auto_pipeline(max_batch=8,
                                                   timeout=self.settings.redis.socket_timeout)
        self._add_commands: dict[str, AddJobCommand] = {}
        self._default_wire_options = bullmq_options(self._default_options)
        self._schedules = RedisSchedules(self)
        self._controls = RedisControls(self)
        self.flows = RedisFlows(self)
        self._waiters = JobWaiters(self.connection.worker_client,
                                   self.connection.release_worker_client,
                                   lambda queue: events_key(self.queue_prefix(queue), queue),
                                   self._final_reads)

    @classmethod
    async def connect(cls, settings: QueuekitSettings | None = None,
                      registry: QueueRegistry | None = None) -> RedisQueueService:
        """A started service that owns its connection; close it with ``close()``."""
        service = cls(settings, registry)
        try:
            await service.start()
        except BaseException:
            await service.close()
            raise
        return service

    async def start(self) -> None:
        """Check the connection (within ``redis.startup_timeout``)."""
        await self.connection.server_info()

    @property
    def prefix(self) -> str:
        """The key prefix of every BullMQ key of this service."""
        return self.settings.redis.prefix

    def queue_prefix(self, queue: str) -> str:
        """The BullMQ prefix of ``queue``'s keys (hash-tagged on a cluster)."""
        return self.layout.queue_prefix(queue)

    def parse_job_key(self, key: str) -> tuple[str, str] | None:
        """(queue, job id) of a BullMQ job key of this service (cluster prefixes too)."""
        return self.layout.parse_job_key(key)

    def check_one_slot(self, queues: set[str]) -> None:
        """Raise ``ConfigurationError`` unless these queues share one cluster slot."""
        self.layout.check_one_slot(queues)

    def get_queue(self, name: str) -> Any:
        """The bullmq ``Queue`` of ``name`` (one per name, created on first use)."""
        self._ensure_open()
        name = str(name)
        queue = self._queues.get(name)
        if queue is None:
            queue = bullmq.Queue(name, {"connection": self.connection.client,
                                        "prefix": self.queue_prefix(name)})
            self.connection.apply_to(queue.redisConnection)
            self._queues[name] = queue
            log.debug("queue %s initialised", name, extra={"queue": name})
        return queue

    def add_command(self, queue: str) -> AddJobCommand:
        """The add-script call of ``queue`` (built once per queue)."""
        command = self._add_commands.get(queue)
        if command is None:
            command = AddJobCommand(self.get_queue(queue), self._pipe)
            self._add_commands[queue] = command
        return command

    def _wire_options(self, job: PreparedJob) -> Mapping[str, Any]:
        if job.options is self._default_options:  # the common case, converted once
            opts = self._default_wire_options
        else:
            opts = bullmq_options(job.options)
        return with_trace_metadata(opts, job.trace_metadata)

    def _start_add(self, job: PreparedJob, created_ms: int) -> Awaitable[str]:
        command = self.add_command(job.queue)
        opts = self._wire_options(job)
        added = None if job.options.job_id else self._waiters.before_add(job.queue)
        # bullmq's add script, written now through the auto-pipeline (concurrent adds of
        # this process share one round trip); its reply is awaited by the caller.
        pending = self.breaker.start(command.start, job.name, job.data_json, opts, created_ms)
        return pending if added is None else told(pending, added)

    def _start_add_bulk(self, jobs: Sequence[PreparedJob],
                        created_ms: int) -> Awaitable[list[str]]:
        command = self.add_command(jobs[0].queue)
        calls = [command.build(job.name, job.data_json, self._wire_options(job), created_ms)
                 for job in jobs]
        added = (None if any(job.options.job_id for job in jobs)
                 else self._waiters.before_add(jobs[0].queue))
        pending = self.breaker.start(command.start_many, self.connection.client, calls)
        return pending if added is None else told(pending, added)

    async def _add_flow(self, entries: Sequence[FlowEntry]) -> None:
        await self.flows.add(entries)

    async def _get_raw_flow(self, queue: str, job_id: str) -> RawFlow | None:
        return await self.flows.raw_flow(queue, job_id)

    async def _cancel_job(self, queue: str, job_id: str) -> bool:
        return await cancel_job(self, queue, job_id)

    def _start_worker(self, queue: str, processor: Processor, concurrency: int) -> QueueWorker:
        return ENGINES[self.settings.worker.engine](self, queue, processor, concurrency)

    def _make_rate_limiter(self) -> RateLimiter:
        prefix = self.queue_prefix
        return RedisRateLimiter(self.settings.security.rate_limits, self.connection.client,
                                key=lambda queue, user: rate_limit_key(prefix(queue), queue,
                                                                       user))

    async def _admit(self, jobs: Sequence[PreparedJob]) -> None:
        # Only a queue with a limit reaches Redis here; anything else would count as a
        # successful call and reset (or, half-open, close) the breaker without Redis.
        if jobs[0].queue in self.settings.security.rate_limits:
            await self.breaker.call(lambda: super(RedisQueueService, self)._admit(jobs))

    async def _upsert_job_scheduler(self, spec: SchedulerSpec) -> JobSchedulerInfo:
        return await self._schedules.upsert(spec)

    async def _get_job_schedulers(self, queue: str) -> list[JobSchedulerInfo]:
        return await self._schedules.get_all(queue)

    async def _get_job_scheduler(self, queue: str, scheduler_id: str) -> JobSchedulerInfo | None:
        return await self._schedules.get(queue, scheduler_id)

    async def _remove_job_scheduler(self, queue: str, scheduler_id: str) -> bool:
        return await self._schedules.remove(queue, scheduler_id)

    async def _declared_schedulers(self) -> set[tuple[str, str]]:
        return await self._schedules.declared()

    async def _record_declared(self, current: set[tuple[str, str]],
                               stale: set[tuple[str, str]]) -> None:
        await self._schedules.record_declared(current, stale)

    def _event_stream(self, queue: str) -> EventStream:
        return RedisEventStream(self, queue)

    async def read_raw_job(self, queue: str, job_id: str) -> RawJob | None:
        """One job as the store holds it (before it becomes a ``JobInfo``), or None."""
        return await self._get_raw_job(queue, job_id)

    async def _get_raw_job(self, queue: str, job_id: str) -> RawJob | None:
        bull_queue = self.get_queue(queue)

        async def read() -> RawJob | None:
            # State first: the hash read after it is at least as new, so a finished
            # state always comes with its finishedOn, failedReason and return value.
            # Both in one batch of the auto-pipeline (wait_for_job reads after every
            # wake-up), and the hash parsed without building bullmq's Job.
            scripts = bull_queue.scripts
            sha, key = scripts.commands["getStateV2"].sha, scripts.toKey(job_id)
            keys = scripts.getKeys(list(GET_STATE_KEYS))
            state, fields = await self._pipe.execute_batch(
                ("EVALSHA", sha, len(keys), *keys, job_id, key), ("HGETALL", key))
            if isinstance(state, ResponseError):  # NOSCRIPT (a restarted server), old Redis
                state = await bull_queue.getJobState(job_id)
            if isinstance(fields, ResponseError):
                raise fields
            if isinstance(fields, list):  # RESP2: a flat list of names and values
                fields = dict(zip(fields[::2], fields[1::2], strict=True))
            return raw_from_hash(fields, job_id, str(state)) if fields else None

        return await self.breaker.call(read)

    async def get_job_logs(self, queue: str, job_id: str) -> list[str]:
        """The lines a processor logged for the job (BullMQ's job log, oldest first)."""
        bull_queue = self.get_queue(str(queue))
        found: dict[str, Any] = await self.breaker.call(
            lambda: bull_queue.getJobLogs(str(job_id)))
        return [str(line) for line in found.get("logs", [])]

    async def _get_counts(self, queue: str) -> dict[str, int]:
        bull_queue = self.get_queue(queue)
        counts: dict[str, Any] = await self.breaker.call(
            lambda: bull_queue.getJobCounts(*COUNT_STATES)
        )
        return {state: int(counts.get(state, 0) or 0) for state in COUNT_STATES}

    async def _get_raw_jobs(self, queue: str, state: str, limit: int) -> list[RawJob]:
        bull_queue = self.get_queue(queue)
        # BullMQ's order: finished sets newest first, the others in the order they run.
        ascending = state not in ("completed", "failed")
        jobs: list[Any] = await self.breaker.call(
            lambda: bull_queue.getJobs([state], 0, limit - 1, ascending)
        )
        return [raw_from_bull(job, state) for job in jobs if job is not None]

    async def _retry_failed(self, queue: str) -> int:
        bull_queue = self.get_queue(queue)
        scripts, failed_key = bull_queue.scripts, bull_queue.keys["failed"]
        now = int(time.time() * 1000)
        keys, args = scripts.moveJobsToWaitArgs("failed", _RETRY_BATCH, now)
        move = scripts.commands["moveJobsToWait"]

        client = self.connection.client

        async def batch() -> tuple[int, bool]:
            # One MULTI: the count and BullMQ's move see the same failed set, so the
            # number reported is the number moved even while other workers fail jobs.
            # The script is loaded first (on every primary of a cluster): a NOSCRIPT
            # inside the MULTI would fail it. A rare admin call: one SCRIPT LOAD is cheap.
            await client.script_load(move.script)
            async with client.pipeline(transaction=True) as pipe:
                pipe.zcount(failed_key, 0, now)
                pipe.execute_command("EVALSHA", move.sha, len(keys), *keys, *args)
                found, more = await pipe.execute()
            return min(int(found), _RETRY_BATCH), bool(int(more))

        moved = 0
        while True:
            count, more = await self.breaker.call(batch)
            moved += count
            if not more or not count:
                return moved

    async def _stored_queues(self) -> set[str]:
        client, layout = self.connection.client, self.layout

        async def scan() -> set[str]:
            names = set()
            async for key in client.scan_iter(match=layout.meta_pattern(), count=500):
                name = layout.queue_of_meta_key(str(key))
                if name is not None:
                    names.add(name)
            return names

        return await self.breaker.call(scan)

    async def _count_workers(self, queue: str) -> int:
        bull_queue = self.get_queue(queue)
        clients: list[dict[str, Any]] = await self.breaker.call(bull_queue.get_workers)
        # A bullmq worker gives each of its connections the same name: count names.
        return len({c.get("rawname") for c in clients if c.get("rawname")})

    async def _job_state(self, queue: str, job_id: str) -> JobState | None:
        # wait_for_job's first look: the state script alone (as Node's isFinished),
        # through the auto-pipeline; bullmq's own call on old Redis (no ZMSCORE).
        bull_queue = self.get_queue(queue)
        scripts = bull_queue.scripts
        keys = scripts.getKeys(list(GET_STATE_KEYS))

        async def look() -> Any:
            try:
                return await self._pipe.run_script(scripts.commands["getStateV2"], keys,
                                                   [job_id, scripts.toKey(job_id)])
            except ResponseError:
                return await bull_queue.getJobState(job_id)

        state = str(await self.breaker.call(look))
        if state == JobState.UNKNOWN:
            return None
        try:
            return JobState(state)
        except ValueError:  # a state this version does not name: not finished
            return JobState.WAITING

    def _final_reads(self, queue: str) -> FinalReads:
        registry = self.registry
        return FinalReads(queue_key(self.queue_prefix(queue), queue),
                          lambda raw: raw.to_info(queue, registry))

    async def _watch_job(self, queue: str, job_id: str) -> JobWatch:
        # One events reader per queue and process, however many callers wait.
        return await self._waiters.watch(queue, job_id)

    async def _health_backend(self) -> tuple[str, str]:
        return await self.connection.ping(), self.breaker.state

    # -- controls and deduplication (queuekit.redis.controls) --------------------------

    async def _add_dedup(self, job: PreparedJob) -> tuple[str, bool]:
        return await self._controls.add_dedup(job)

    async def _get_dedup_job_id(self, queue: str, dedup_id: str) -> str | None:
        return await self._controls.dedup_job_id(queue, dedup_id)

    async def _set_paused(self, queue: str, paused: bool) -> None:
        await self._controls.set_paused(queue, paused)

    async def _is_paused(self, queue: str) -> bool:
        return await self._controls.is_paused(queue)

    async def _remove_job(self, queue: str, job_id: str) -> bool:
        return await self._controls.remove_job(queue, job_id)

    async def _clean(self, queue: str, state: str, grace_ms: int, limit: int) -> list[str]:
        return await self._controls.clean(queue, state, grace_ms, limit)

    async def _drain(self, queue: str) -> None:
        await self._controls.drain(queue)

    async def _obliterate(self, queue: str, force: bool) -> None:
        await self._controls.obliterate(queue, force)

    async def _set_global_concurrency(self, queue: str, n: int | None) -> None:
        await self._controls.set_global_concurrency(queue, n)

    async def _get_global_concurrency(self, queue: str) -> int | None:
        return await self._controls.get_global_concurrency(queue)

    async def _close_backend(self) -> None:
        await self._waiters.aclose()
        for name, queue in list(self._queues.items()):
            try:
                await queue.close()
            except Exception as exc:
                log.warning("closing queue %s: %s", name, exc, extra={"queue": name})
        self._queues.clear()
        await self._pipe.aclose()
        if self._owns_connection:
            await self.connection.close()
