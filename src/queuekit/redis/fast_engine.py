"""queuekit's own worker engine over BullMQ's Lua scripts (``worker.engine: fast``).

bullmq's Python ``Worker`` spends two script calls per job (``moveToActive``, then
``moveToFinished`` without fetch-next) and sends each on its own round trip. Node BullMQ
finishes a job and fetches the next one in the same ``moveToFinished`` call, and ioredis
pipelines commands issued in the same tick. This engine does both: in steady state one
``EVALSHA`` per job, batched with the other slots' calls through :class:`AutoPipeline`.

Everything that touches Redis state is BullMQ's own scripts and keys (built with bullmq's
``Scripts``), so semantics and format are those of BullMQ: locks renewed every
``lock_duration / 2``, stalled jobs moved back by ``moveStalledJobsToWait``, retries and
backoff by ``Job.moveToFailed``. Node workers and dashboards see nothing different.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

import msgpack
from bullmq.backends.redis_backend import RedisBackend
from bullmq.job import Job
from bullmq.redis_connection import RedisConnection

from queuekit.processors import Processor
from queuekit.redis.breaker import UNAVAILABLE_ERRORS
from queuekit.redis.commands import CompleteJobCommand
from queuekit.redis.jobs import JobHost, LeanJob, next_job_data
from queuekit.redis.keys import MOVE_TO_ACTIVE_KEYS, worker_client_name
from queuekit.redis.link import DedicatedLink
from queuekit.redis.schedules import SchedulerAdvancer
from queuekit.redis.wire import MAX_BLOCK, REDIS_TIMER_SLACK, worker_name
from queuekit.redis.worker import RedisWorker

if TYPE_CHECKING:
    from queuekit.redis.service import RedisQueueService

log = logging.getLogger("queuekit.engine")


class FastWorker(RedisWorker):
    """A worker with ``concurrency`` slots; each slot chains jobs via fetch-next."""

    def __init__(self, service: RedisQueueService, queue: str, processor: Processor,
                 concurrency: int) -> None:
        super().__init__(service, queue, processor, concurrency)
        settings = self._worker_settings
        # Dashboards count workers by client name, as bullmq names them: one per worker.
        self.connection.name_client(self._client, worker_client_name(
            self.prefix, queue, worker_name()))
        self._pipe = self.connection.auto_pipeline(max_batch=8, client=self._client)
        self._marker_link = DedicatedLink(self._client)  # the blocking wait's connection
        backend = RedisBackend(queue, RedisConnection(self._client), prefix=self.prefix,
                               owns_connection=False)
        self._scripts: Any = backend.scripts
        self._commands: dict[str, Any] = backend.scripts.commands
        self._marker = backend.keys["marker"]
        self._host = JobHost(backend, queue, {
            "prefix": self.prefix,
            "concurrency": concurrency,
            "lockDuration": settings.lock_duration,
            "stalledInterval": settings.stalled_interval,
            "maxStalledCount": settings.max_stalled_count,
            "limiter": self._limiter,
        })
        self._advance = SchedulerAdvancer(self._scripts, queue, self._scripts_call)
        self._active_opts = {"lockDuration": settings.lock_duration, "limiter": self._limiter}
        self._complete_command = CompleteJobCommand(self._scripts, settings.lock_duration,
                                                    self._limiter)
        self._lock_duration = settings.lock_duration
        self._stalled_interval = settings.stalled_interval
        self._drain_delay = settings.drain_delay
        self._locks: dict[str, str] = {}  # job id -> lock token, renewed in the background
        self._drained = False
        self._block_until = 0
        self._background: list[asyncio.Task[None]] = []

    async def _open(self) -> None:
        await super()._open()
        self._background = [asyncio.ensure_future(self._renew_locks()),
                            asyncio.ensure_future(self._check_stalled())]

    # -- fetching ------------------------------------------------------------------------

    async def _fetch(self) -> Any:
        while not self._closing:
            await self._wait_out_limit()
            try:
                if self._drained:
                    try:
                        await self._wait_for_marker()
                    except asyncio.CancelledError:
                        if self._closing:
                            return None
                        raise
                    if self._closing:
                        return None
                    # A job put back by a rate limit woke us: the limit holds first.
                    await self._wait_out_limit()
                token = self._next_token()
                raw = await self._scripts_call(
                    "moveToActive", *self._move_to_active_args(token))
                data, job_id, limit_ttl, delay_until = next_job_data(raw)
            except UNAVAILABLE_ERRORS as exc:
                log.warning("worker for %s: Redis unavailable (%s); retrying in %g s",
                            self.queue, exc, self._retry_delay, extra=self._extra)
                await asyncio.sleep(self._retry_delay)
                continue
            except Exception as exc:
                # An error answer (e.g. OOM under maxmemory): keep the worker alive, as
                # bullmq's does, and try again after the retry delay.
                log.error("worker for %s: fetching a job failed (%s); retrying in %g s",
                          self.queue, exc, self._retry_delay, extra=self._extra)
                await asyncio.sleep(self._retry_delay)
                continue
            if data:
                self._drained = False
                job = self._job(data, job_id, token)
                # A job scheduler's run (``rjk``) produces the next run when it becomes
                # active, on both fetch paths, as Node's worker does.
                if job.repeatJobKey:
                    await self._advance(job)
                return job
            if self._rate_limited_for(limit_ttl):
                continue
            self._drained = True
            self._block_until = int(delay_until or 0)
        return None

    def _rate_limited_for(self, limit_ttl: Any) -> bool:
        """moveToActive (or fetch-next) answered "rate limited for ttl ms": wait that."""
        ttl = int(limit_ttl or 0)
        if ttl <= 0:
            return False
        self._limit_for(ttl)
        self._drained = False
        return True

    def _move_to_active_args(self, token: str) -> tuple[list[str], list[Any]]:
        keys = self._scripts.getKeys(list(MOVE_TO_ACTIVE_KEYS))
        opts = msgpack.packb({"token": token, **self._active_opts}, use_bin_type=True)
        return keys, [self._scripts.keys[""], round(time.time() * 1000), opts]

    async def _scripts_call(self, name: str, keys: list[str], args: list[Any]) -> Any:
        return await self._pipe.run_script(self._commands[name], keys, args)

    async def _wait_for_marker(self) -> None:
        """Block on the marker key until a job may be there (or a delayed one is due)."""
        block_until = self._block_until
        if block_until:
            timeout = (block_until - time.time() * 1000) / 1000
            if timeout <= 0:
                return
            precise = timeout < MAX_BLOCK
            wait = max(timeout - REDIS_TIMER_SLACK, 0.001) if precise else MAX_BLOCK
        else:
            precise = False
            wait = self._drain_delay
        result = await self._marker_link.call(
            "BZPOPMIN", self._marker, wait,
            direct=lambda: self._client.bzpopmin(self._marker, wait))
        if result:
            _key, member, score = result
            self._block_until = int(float(score)) if member and float(score) else 0
            return
        if precise:
            remaining = block_until - time.time() * 1000
            if remaining > 0:
                await asyncio.sleep(remaining / 1000)
        self._block_until = 0

    def _job(self, data: dict[str, Any], job_id: str, token: str) -> Any:
        self._locks[job_id] = token
        lean = LeanJob.read(self._host, data, job_id, token)
        if lean is not None:
            return lean
        job = Job.fromJSON(self._host, data, job_id)
        job.token = token
        return job

    # -- finishing -----------------------------------------------------------------------

    async def _complete(self, job: Any, value: Any) -> Any:
        token = job.token
        fetch_next = not self._closing and not self._is_limited()
        try:
            if isinstance(job, LeanJob):
                keys, args = self._complete_command.build(
                    job.id, job.attempts, job.attemptsMade, job.parsed.keep_jobs, token,
                    value, fetch_next)
            else:
                remove = job.opts.get("removeOnComplete", False)
                keys, args = self._scripts.moveToCompletedArgs(job, value, remove, token,
                                                               fetch_next)
            raw = await self._scripts_call("moveToFinished", keys, args)
        except UNAVAILABLE_ERRORS as exc:
            log.error("job %s on %s finished but Redis is unavailable (%s); its lock will "
                      "expire and it will run again", job.id, self.queue, exc,
                      extra={"queue": self.queue, "job_id": job.id})
            return None
        finally:
            self._untrack(job)
        if isinstance(raw, int) and raw < 0:
            error = self._scripts.finishedErrors(
                {"code": raw, "jobId": job.id, "command": "moveToFinished", "state": "active"})
            log.error("job %s on %s: %s", job.id, self.queue, error,
                      extra={"queue": self.queue, "job_id": job.id})
            return None
        self._log_completed(job.id)
        data, next_id, limit_ttl, delay_until = next_job_data(raw)
        if data and not self._closing:
            job = self._job(data, next_id, token)
            if job.repeatJobKey:  # see _fetch
                await self._advance(job)
            return job
        if not data and not self._rate_limited_for(limit_ttl):
            self._drained = True
            self._block_until = int(delay_until or 0)
        return None

    def _untrack(self, job: Any) -> None:
        self._locks.pop(job.id, None)

    # -- background duties ---------------------------------------------------------------

    async def _renew_locks(self) -> None:
        while True:
            await asyncio.sleep(self._lock_duration / 2000)
            if not self._locks:
                continue
            ids, tokens = list(self._locks), list(self._locks.values())
            try:
                lost = await self._scripts.extendJobLocks(ids, tokens, self._lock_duration)
            except Exception as exc:
                log.warning("worker for %s could not renew locks: %s", self.queue, exc,
                            extra=self._extra)
                continue
            renewed = dict(zip(ids, tokens, strict=True))
            for job_id in lost or []:
                if self._locks.get(job_id) != renewed[job_id]:
                    continue  # it finished while the renewal was in flight: not lost
                log.warning("job %s on %s lost its lock", job_id, self.queue,
                            extra={"queue": self.queue, "job_id": job_id})

    async def _check_stalled(self) -> None:
        while True:
            try:
                stalled = await self._scripts.moveStalledJobsToWait(
                    self._max_stalled, self._stalled_interval)
            except Exception as exc:
                log.warning("worker for %s: stalled check failed: %s", self.queue, exc,
                            extra=self._extra)
            else:
                for job_id in stalled or []:
                    self._log_stalled(job_id)
            await asyncio.sleep(self._stalled_interval / 1000)

    async def _release(self, forced: bool) -> None:
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await self._pipe.aclose()
        await self._marker_link.aclose()
        await super()._release(forced)
