"""The Redis implementation of ``QueueService``, on the official Python port of BullMQ.

Jobs are stored in BullMQ's own format under the configured prefix (``queue``), so Node
BullMQ workers and dashboards read them. bullmq is untyped: its objects stay ``Any``
inside this module and never reach the public API.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
import uuid
from collections.abc import Sequence
from typing import Any

import bullmq
from bullmq.custom_errors import UnrecoverableError as BullUnrecoverableError

from queuekit.breaker import AsyncCircuitBreaker, make_breaker
from queuekit.commands import AddJobCommand
from queuekit.connection import QueueConnection
from queuekit.errors import PayloadValidationError, UnrecoverableError
from queuekit.events import EventStream, EventType, QueueEvent
from queuekit.jobs import COUNT_STATES, Progress, result_from_wire
from queuekit.keys import (
    events_key,
    job_key,
    meta_key_pattern,
    queue_of_meta_key,
    rate_limit_key,
)
from queuekit.pipeline import AutoPipeline
from queuekit.queues import QueueRegistry
from queuekit.ratelimit import RateLimiter, RedisRateLimiter
from queuekit.service import (
    PreparedJob,
    Processor,
    QueueService,
    QueueWorker,
    RawJob,
    normalise_result,
)
from queuekit.settings import QueuekitSettings

log = logging.getLogger("queuekit.redis")

#: Failed jobs ``retry_jobs`` moves per script call (BullMQ's default batch).
_RETRY_BATCH = 1000
#: How often ``wait_for_job`` re-reads a job: starts small, grows to the cap.
_POLL_START = 0.005
_POLL_CAP = 0.1


class BullJobReporter:
    """Progress and logs of a bullmq job (or anything with its ``updateProgress``/``log``)."""

    def __init__(self, job: Any) -> None:
        self._job = job

    async def update_progress(self, progress: Progress) -> None:
        await self._job.updateProgress(progress)

    async def log(self, text: str) -> None:
        await self._job.log(text)


def raw_from_bull(job: Any, state: str) -> RawJob:
    """Our view of a bullmq ``Job``."""
    return RawJob(
        id=str(job.id),
        name=str(job.name),
        data=job.data,
        opts=job.opts or {},
        state=state,
        progress=job.progress,
        attempts_made=int(job.attemptsMade or 0),
        return_value=job.returnvalue,
        failed_reason=job.failedReason or None,
        timestamp=int(job.timestamp or 0),
        processed_on=int(job.processedOn or 0),
        finished_on=int(job.finishedOn or 0),
        delay=int((job.opts or {}).get("delay") or job.delay or 0),
        priority=int(job.priority or 0),
    )


#: What bullmq's stalled check stores (``defa``) on a job that stalled too often; the
#: next worker to fetch the job fails it with that reason instead of running it.
STALLED_TOO_OFTEN = "job stalled more than allowable limit"


def stalled_reason(stalled: int, max_stalled: int) -> str:
    """The failed reason of a job that stalled ``stalled`` times, over the limit."""
    return (
        f"{STALLED_TOO_OFTEN}: it was running {stalled} times when its worker stopped "
        "renewing its lock (the process crashed, was killed, or blocked its event loop "
        f"longer than worker.lock_duration); worker.max_stalled_count is {max_stalled}"
    )


#: Redis checks blocking timeouts on its ``hz`` timer (10 per second by default), so a
#: ``BZPOPMIN`` timeout can end up to 100 ms late. The worker asks Redis to wake it this
#: much early and waits the rest on the local clock.
_REDIS_TIMER_SLACK = 0.1


class _PreciseWorker(bullmq.Worker):  # type: ignore[misc]
    """bullmq's ``Worker`` with delays and backoffs honoured to within a few ms.

    Only the idle wait changes: the blocking ``BZPOPMIN`` on the marker key ends
    ``_REDIS_TIMER_SLACK`` before the next delayed job is due, and the remainder is
    slept locally. Everything else (scripts, keys, locks) is bullmq's.
    """

    async def nextJobFromJobData(self, *args: Any, **kwargs: Any) -> Any:  # noqa: N802
        job = await super().nextJobFromJobData(*args, **kwargs)
        if job is not None and job.deferredFailure == STALLED_TOO_OFTEN:
            job.deferredFailure = stalled_reason(int(job.stalledCounter or 0),
                                                 int(self.opts["maxStalledCount"]))
        return job

    async def waitForJob(self) -> int:  # noqa: N802 - overrides bullmq
        block_until = int(self.blockUntil or 0)
        timeout = float(self.getBlockTimeout(block_until))
        precise = bool(block_until) and timeout < self.maximumBlockTimeout
        if precise:
            timeout = max(timeout - _REDIS_TIMER_SLACK, self.minimumBlockTimeout)
        try:
            result = await self.backend.waitForJob(timeout)
        except asyncio.CancelledError:
            raise
        except Exception as err:
            if self.isConnectionError(err) and not (self.closing or self.closed):
                await asyncio.sleep(0.1)  # do not spin while Redis is away
            raise
        if result:
            _key, member, score = result
            return int(float(score)) if member else 0
        if precise:
            remaining = block_until - time.time() * 1000
            if remaining > 0:
                await asyncio.sleep(remaining / 1000)
        return 0


def worker_name() -> str:
    """A name for one worker, unique across hosts and processes (in its Redis client name)."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


async def run_job(service: QueueService, queue: str, processor: Processor, job: Any) -> Any:
    """Run ``processor`` on a bullmq job; return the value to store (both engines).

    A payload that fails validation, or the processor's ``UnrecoverableError``, becomes
    bullmq's ``UnrecoverableError``: the job fails without further attempts.
    """
    raw = raw_from_bull(job, "active")
    try:
        context = service._context(queue, raw, BullJobReporter(job))
    except PayloadValidationError as exc:
        log.error("job %s on %s rejected: %s", raw.id, queue, exc,
                  extra={"queue": queue, "job_id": raw.id})
        raise BullUnrecoverableError(str(exc)) from exc
    try:
        result = await processor(context)
    except UnrecoverableError as exc:
        raise BullUnrecoverableError(str(exc)) from exc
    return normalise_result(result)


def log_failure(queue: str, job: Any, err: BaseException) -> None:
    """One line per failed attempt: an error when it was the last, a warning otherwise."""
    attempts = int(job.opts.get("attempts", 1) or 1)
    final = isinstance(err, BullUnrecoverableError) or job.attemptsMade >= attempts
    log.log(logging.ERROR if final else logging.WARNING,
            "job %s on %s failed (attempt %d of %d): %s", job.id, queue,
            job.attemptsMade, attempts, err, extra={"queue": queue, "job_id": job.id})


class RedisWorker(QueueWorker):
    """A bullmq ``Worker`` on its own connection pool, running our processor wrapper."""

    def __init__(self, service: RedisQueueService, queue: str, processor: Processor,
                 concurrency: int) -> None:
        super().__init__(queue, processor, concurrency)
        self._service = service
        settings = service.settings
        self._client = service.connection.worker_client()
        self._bull: Any = _PreciseWorker(
            queue,
            self._process,
            {
                "connection": self._client,
                "prefix": settings.redis.prefix,
                "concurrency": concurrency,
                "lockDuration": settings.worker.lock_duration,
                "stalledInterval": settings.worker.stalled_interval,
                "maxStalledCount": settings.worker.max_stalled_count,
                "drainDelay": settings.worker.drain_delay,
                # bullmq waits 15 s after a connection error before fetching again.
                "runRetryDelay": settings.worker.run_retry_delay,
                # A name per worker, so count_workers tells two processes' workers apart.
                "name": worker_name(),
                "autorun": False,
            },
        )
        self._bull.on("completed", self._on_completed)
        self._bull.on("failed", self._on_failed)
        self._bull.on("error", self._on_error)
        self._bull.on("stalled", self._on_stalled)
        self._closed = False
        self._task: asyncio.Task[None] = asyncio.ensure_future(self._run())

    @property
    def running(self) -> bool:
        return not self._closed and not self._task.done()

    async def _run(self) -> None:
        try:
            await self._service.connection.server_info()
            for conn in (self._bull.redisConnection, self._bull.blockingRedisConnection):
                self._service.connection.apply_to(conn)
            await self._bull.run()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("worker for %s stopped", self.queue, extra={"queue": self.queue})

    async def _process(self, job: Any, token: str) -> Any:
        return await run_job(self._service, self.queue, self.processor, job)

    def _on_completed(self, job: Any, result: Any) -> None:
        log.info("job %s on %s completed", job.id, self.queue,
                 extra={"queue": self.queue, "job_id": job.id})

    def _on_failed(self, job: Any, err: BaseException) -> None:
        log_failure(self.queue, job, err)

    def _on_error(self, err: BaseException, job: Any = None) -> None:
        log.error("worker for %s: %s", self.queue, err, extra={"queue": self.queue})

    def _on_stalled(self, job_id: str, *args: Any) -> None:
        log.warning("job %s on %s stalled and was moved back to wait", job_id, self.queue,
                    extra={"queue": self.queue, "job_id": job_id})

    async def close(self, timeout: float | None = None) -> None:
        if self._closed:
            return
        self._closed = True
        close_task = asyncio.ensure_future(self._bull.close())
        done, _ = await asyncio.wait({close_task}, timeout=timeout)
        if not done:
            active = len(self._bull.jobs)
            log.warning("worker for %s: %d job(s) still active after %g s; forcing close "
                        "(their locks expire and another worker re-runs them)",
                        self.queue, active, timeout, extra={"queue": self.queue})
            self._bull.forceClosing = True
            self._bull.cancelProcessing()
            await close_task
        if not self._task.done():
            try:
                await asyncio.wait_for(self._task, timeout=5)
            except TimeoutError:  # pragma: no cover - bullmq's loop did not end
                self._task.cancel()
        await self._service.connection.release_worker_client(self._client)
        log.info("worker for %s closed", self.queue, extra={"queue": self.queue})


#: Events of BullMQ's stream that we pass on as they are.
_PLAIN_EVENTS = {"active": EventType.ACTIVE, "stalled": EventType.STALLED}
#: How long one blocking XREAD waits, in ms: bounds how long closing a stream takes.
_EVENTS_BLOCK_MS = 1000


class RedisEventStream(EventStream):
    """BullMQ's event stream of a queue (``QueueEvents`` underneath), as ``QueueEvent``s.

    bullmq's listeners are synchronous: they only queue the raw entries, which
    ``__anext__`` translates (reading the job where the stream alone does not say, e.g.
    which attempt failed). A failed attempt that will be retried appears in BullMQ's
    stream as ``delayed`` (backoff) or ``waiting`` with ``prev=active``; it becomes a
    ``failed`` event with ``will_retry=True`` and a ``retrying`` event here, so it looks
    the same whichever worker (Python or Node) ran the job.
    """

    def __init__(self, service: RedisQueueService, queue: str) -> None:
        super().__init__(queue)
        self._service = service
        self._raw: asyncio.Queue[tuple[str, dict[str, Any]] | BaseException] = asyncio.Queue()
        self._client: Any = None
        self._bull: Any = None
        self._stalled: set[str] = set()

    async def _subscribe(self) -> None:
        connection = self._service.connection
        self._client = connection.worker_client()
        key = events_key(self._service.prefix, self.queue)
        last = await self._service.breaker.call(lambda: self._client.xrevrange(key, count=1))
        self._bull = bullmq.QueueEvents(self.queue, {
            "connection": self._client,
            "prefix": self._service.prefix,
            "blockingTimeout": _EVENTS_BLOCK_MS,
            "lastEventId": last[0][0] if last else "0-0",
            "autorun": False,
            "skipVersionCheck": True,
        })
        for name in ("waiting", "delayed", "active", "progress", "completed", "failed",
                     "stalled"):
            self._bull.on(name, self._listener(name))
        self._bull.on("error", lambda err: self._raw.put_nowait(err))
        self._task = asyncio.ensure_future(self._bull.run())

    def _listener(self, name: str) -> Any:
        def listen(args: dict[str, Any], entry_id: str) -> None:
            self._raw.put_nowait((name, dict(args)))
        return listen

    async def __anext__(self) -> QueueEvent:
        while True:
            if not self._pending.empty() or self._closed:
                return await super().__anext__()
            if not self._opened:
                await self.open()
            getter = asyncio.ensure_future(self._raw.get())
            pending = asyncio.ensure_future(self._pending.get())
            done, _ = await asyncio.wait({getter, pending}, return_when=asyncio.FIRST_COMPLETED)
            if pending in done:
                getter.cancel()
                self._pending.put_nowait(pending.result())
                continue
            pending.cancel()
            raw = getter.result()
            if isinstance(raw, BaseException):
                self._fail(raw)
                continue
            for event in await self._translate(*raw):
                self._put(event)

    async def _job_fields(self, job_id: str) -> dict[str, Any]:
        key = job_key(self._service.prefix, self.queue, job_id)
        atm, reason, attempts = await self._service.connection.client.hmget(
            key, ["atm", "failedReason", "opts"])
        max_attempts = 1
        if attempts:
            try:
                max_attempts = int(json.loads(attempts).get("attempts", 1) or 1)
            except (ValueError, AttributeError):
                max_attempts = 1
        return {"atm": int(atm or 0), "reason": reason, "attempts": max_attempts}

    async def _translate(self, name: str, args: dict[str, Any]) -> list[QueueEvent]:
        job_id = str(args.get("jobId", ""))
        queue = self.queue
        if name in _PLAIN_EVENTS:
            if name == "stalled":
                self._stalled.add(job_id)
            return [QueueEvent(_PLAIN_EVENTS[name], queue, job_id)]
        if name == "progress":
            return [QueueEvent(EventType.PROGRESS, queue, job_id, args.get("data"))]
        if name == "completed":
            return [QueueEvent(EventType.COMPLETED, queue, job_id,
                               result_from_wire(args.get("returnvalue")))]
        if name == "failed":
            fields = await self._job_fields(job_id)
            attempt = fields["atm"] or None
            return [QueueEvent(EventType.FAILED, queue, job_id, args.get("failedReason"),
                               attempt, False)]
        retry = (name == "waiting" and args.get("prev") == "active") or (
            name == "delayed" and "prev" not in args)
        if retry and job_id in self._stalled:
            self._stalled.discard(job_id)
            return []
        if retry:
            fields = await self._job_fields(job_id)
            if fields["atm"] > 0 and fields["reason"]:
                due = int(args.get("delay", 0) or 0)
                backoff = max(due - int(time.time() * 1000), 0) if name == "delayed" else 0
                return [
                    QueueEvent(EventType.FAILED, queue, job_id, fields["reason"],
                               fields["atm"], True),
                    QueueEvent(EventType.RETRYING, queue, job_id, backoff, fields["atm"] + 1),
                ]
        if name == "delayed":
            due = int(args.get("delay", 0) or 0)
            return [QueueEvent(EventType.DELAYED, queue, job_id,
                               max(due - int(time.time() * 1000), 0))]
        return [QueueEvent(EventType.WAITING, queue, job_id)]

    async def _unsubscribe(self) -> None:
        if self._bull is not None:
            await self._bull.close()
        if self._client is not None:
            await self._service.connection.release_worker_client(self._client)


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
        self._pipe = AutoPipeline(self.connection.batch_client, max_batch=8,
                                  timeout=self.settings.redis.socket_timeout)
        self._add_commands: dict[str, AddJobCommand] = {}

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

    def get_queue(self, name: str) -> Any:
        """The bullmq ``Queue`` of ``name`` (one per name, created on first use)."""
        self._ensure_open()
        name = str(name)
        queue = self._queues.get(name)
        if queue is None:
            queue = bullmq.Queue(name, {"connection": self.connection.client,
                                        "prefix": self.prefix})
            self.connection.apply_to(queue.redisConnection)
            self._queues[name] = queue
            log.debug("queue %s initialised", name, extra={"queue": name})
        return queue

    def _add_command(self, queue: str) -> AddJobCommand:
        command = self._add_commands.get(queue)
        if command is None:
            command = AddJobCommand(self.get_queue(queue), self._pipe)
            self._add_commands[queue] = command
        return command

    async def _add(self, job: PreparedJob) -> str:
        command = self._add_command(job.queue)
        # bullmq's add script, sent through the auto-pipeline: concurrent adds of this
        # process share one round trip.
        return await self.breaker.call(lambda: command(job.name, job.wire, job.opts))

    async def _add_bulk(self, jobs: Sequence[PreparedJob]) -> list[str]:
        command = self._add_command(jobs[0].queue)
        calls = [command.build(job.name, job.wire, job.opts) for job in jobs]
        return await self.breaker.call(lambda: command.add_many(self.connection.client, calls))

    def _start_worker(self, queue: str, processor: Processor, concurrency: int) -> QueueWorker:
        if self.settings.worker.engine == "fast":
            from queuekit.engine import FastWorker  # engine imports this module

            return FastWorker(self, queue, processor, concurrency)
        return RedisWorker(self, queue, processor, concurrency)

    def _make_rate_limiter(self) -> RateLimiter:
        prefix = self.prefix
        return RedisRateLimiter(self.settings.security.rate_limits, self.connection.client,
                                key=lambda queue, user: rate_limit_key(prefix, queue, user))

    async def _admit(self, jobs: Sequence[PreparedJob]) -> None:
        # Only a queue with a limit reaches Redis here; anything else would count as a
        # successful call and reset (or, half-open, close) the breaker without Redis.
        if jobs[0].queue in self.settings.security.rate_limits:
            await self.breaker.call(lambda: super(RedisQueueService, self)._admit(jobs))

    def _event_stream(self, queue: str) -> EventStream:
        return RedisEventStream(self, queue)

    async def _get_raw_job(self, queue: str, job_id: str) -> RawJob | None:
        bull_queue = self.get_queue(queue)

        async def read() -> RawJob | None:
            # State first: the hash read after it is at least as new, so a finished
            # state always comes with its finishedOn, failedReason and return value.
            state = await bull_queue.getJobState(job_id)
            job = await bull_queue.getJob(job_id)
            if job is None:
                return None
            return raw_from_bull(job, str(state))

        return await self.breaker.call(read)

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

        async def batch() -> tuple[int, bool]:
            # One MULTI: the count and BullMQ's move see the same failed set, so the
            # number reported is the number moved even while other workers fail jobs.
            async with self.connection.client.pipeline(transaction=True) as pipe:
                pipe.zcount(failed_key, 0, now)
                await move(keys=keys, args=args, client=pipe)
                found, more = await pipe.execute()
            return min(int(found), _RETRY_BATCH), bool(int(more))

        moved = 0
        while True:
            count, more = await self.breaker.call(batch)
            moved += count
            if not more or not count:
                return moved

    async def _stored_queues(self) -> set[str]:
        client, prefix = self.connection.client, self.prefix

        async def scan() -> set[str]:
            names = set()
            async for key in client.scan_iter(match=meta_key_pattern(prefix), count=500):
                name = queue_of_meta_key(prefix, str(key))
                if name is not None:
                    names.add(name)
            return names

        return await self.breaker.call(scan)

    async def _count_workers(self, queue: str) -> int:
        bull_queue = self.get_queue(queue)
        clients: list[dict[str, Any]] = await self.breaker.call(bull_queue.get_workers)
        # A bullmq worker gives each of its connections the same name: count names.
        return len({c.get("rawname") for c in clients if c.get("rawname")})

    async def _wait_for_change(self, queue: str, job_id: str, timeout: float,
                               attempt: int) -> None:
        # Polling keeps wait_for_job free of a blocking connection per caller; the
        # interval doubles up to a cap so a long wait costs ten round trips a second.
        await asyncio.sleep(min(_POLL_START * 2**attempt, _POLL_CAP, timeout))

    async def _health_backend(self) -> tuple[str, str]:
        return await self.connection.ping(), self.breaker.state

    async def _close_backend(self) -> None:
        for name, queue in list(self._queues.items()):
            try:
                await queue.close()
            except Exception as exc:
                log.warning("closing queue %s: %s", name, exc, extra={"queue": name})
        self._queues.clear()
        await self._pipe.aclose()
        if self._owns_connection:
            await self.connection.close()

