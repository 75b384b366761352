"""queuekit's own worker loop over BullMQ's Lua scripts (the "fast" engine).

bullmq's Python ``Worker`` spends two script calls per job (``moveToActive``, then
``moveToFinished`` without fetch-next) and sends each on its own round trip. Node BullMQ
finishes a job and fetches the next one in the same ``moveToFinished`` call, and ioredis
pipelines commands issued in the same tick. This worker does both: in steady state one
``EVALSHA`` per job, batched with the other slots' calls through :class:`AutoPipeline`.

Everything that touches Redis state is BullMQ's own scripts and keys (built with bullmq's
``Scripts``), so semantics and format are those of BullMQ: locks renewed every
``lock_duration / 2``, stalled jobs moved back by ``moveStalledJobsToWait``, retries and
backoff by ``Job.moveToFailed``. Node workers and dashboards see nothing different.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

import msgpack
from bullmq.backends.redis_backend import RedisBackend
from bullmq.custom_errors import UnrecoverableError as BullUnrecoverableError
from bullmq.job import Job
from bullmq.queue_keys import QueueKeys
from bullmq.redis_connection import RedisConnection
from bullmq.scripts import raw2NextJobData
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError
from redis.exceptions import TimeoutError as RedisTimeoutError

from queuekit.commands import CompleteJobCommand
from queuekit.pipeline import AutoPipeline
from queuekit.redis_service import (
    STALLED_TOO_OFTEN,
    log_failure,
    run_job,
    stalled_reason,
    worker_name,
)
from queuekit.service import Processor, QueueWorker

if TYPE_CHECKING:
    from queuekit.redis_service import RedisQueueService

log = logging.getLogger("queuekit.engine")

#: Redis checks blocking timeouts on its ``hz`` timer (100 ms by default): wake this much
#: early and wait the rest on the local clock, so delays are honoured to a few ms.
_REDIS_TIMER_SLACK = 0.1
#: BullMQ never blocks longer than this (seconds), so a lost connection is noticed.
_MAX_BLOCK = 10.0
_CONNECTION_ERRORS = (RedisConnectionError, RedisTimeoutError, ConnectionError, OSError)


class _JobHost:
    """What a bullmq ``Job`` needs of its queue: backend, names and worker options."""

    def __init__(self, backend: RedisBackend, name: str, opts: dict[str, Any]) -> None:
        self.backend = backend
        self.name = name
        self.qualifiedName = backend.qualifiedName
        self.opts = opts


class FastWorker(QueueWorker):
    """A worker with ``concurrency`` slots; each slot chains jobs via fetch-next."""

    def __init__(self, service: RedisQueueService, queue: str, processor: Processor,
                 concurrency: int) -> None:
        super().__init__(queue, processor, concurrency)
        self._service = service
        settings = service.settings.worker
        prefix = service.prefix
        self._id = uuid.uuid4().hex
        self._client = service.connection.worker_client()
        # Dashboards count workers by client name, as bullmq names them: one per worker.
        client_name = f"{QueueKeys(prefix).getQueueQualifiedName(queue)}:w:{worker_name()}"
        self._client.connection_pool.connection_kwargs["client_name"] = client_name
        self._pipe = AutoPipeline(self._client, max_batch=8)
        backend = RedisBackend(queue, RedisConnection(self._client), prefix=prefix,
                               owns_connection=False)
        self._scripts: Any = backend.scripts
        self._commands: dict[str, Any] = backend.scripts.commands
        self._marker = backend.keys["marker"]
        self._host = _JobHost(backend, queue, {
            "prefix": prefix,
            "concurrency": concurrency,
            "lockDuration": settings.lock_duration,
            "stalledInterval": settings.stalled_interval,
            "maxStalledCount": settings.max_stalled_count,
        })
        self._active_opts = {"lockDuration": settings.lock_duration, "limiter": None}
        self._complete = CompleteJobCommand(self._scripts, settings.lock_duration)
        self._lock_duration = settings.lock_duration
        self._stalled_interval = settings.stalled_interval
        self._max_stalled = settings.max_stalled_count
        self._drain_delay = settings.drain_delay
        self._retry_delay = getattr(settings, "run_retry_delay", 1000) / 1000
        self._tokens = itertools.count(1)
        self._slots = asyncio.Semaphore(concurrency)
        self._active: dict[str, str] = {}  # job id -> lock token
        self._work: set[asyncio.Task[None]] = set()
        self._drained = False
        self._block_until = 0
        self._closing = False
        self._closed = False
        self._waiting: asyncio.Task[None] | None = None
        self._background: list[asyncio.Task[None]] = []
        self._task: asyncio.Task[None] = asyncio.ensure_future(self._run())

    @property
    def running(self) -> bool:
        return not self._closed and not self._task.done()

    @property
    def active_jobs(self) -> int:
        """Jobs being processed right now."""
        return len(self._active)

    # -- main loop -------------------------------------------------------------------

    async def _run(self) -> None:
        try:
            await self._service.connection.server_info()
            self._background = [asyncio.ensure_future(self._renew_locks()),
                                asyncio.ensure_future(self._check_stalled())]
            while not self._closing:
                await self._slots.acquire()
                job = await self._fetch() if not self._closing else None
                if job is None:
                    self._slots.release()
                    continue
                task = asyncio.ensure_future(self._run_slot(job))
                self._work.add(task)
                task.add_done_callback(self._work.discard)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("worker for %s stopped", self.queue, extra={"queue": self.queue})

    async def _fetch(self) -> Any:
        """The next job for a free slot, or None when closing."""
        while not self._closing:
            try:
                if self._drained:
                    self._waiting = asyncio.ensure_future(self._wait_for_marker())
                    try:
                        await self._waiting
                    except asyncio.CancelledError:
                        if self._closing:
                            return None
                        raise
                    finally:
                        self._waiting = None
                    if self._closing:
                        return None
                token = f"{self._id}:{next(self._tokens)}"
                raw = await self._scripts_call(
                    "moveToActive", *self._move_to_active_args(token))
                data, job_id, _limit_until, delay_until = raw2NextJobData(raw)
            except _CONNECTION_ERRORS as exc:
                log.warning("worker for %s: Redis unavailable (%s); retrying in %g s",
                            self.queue, exc, self._retry_delay, extra={"queue": self.queue})
                await asyncio.sleep(self._retry_delay)
                continue
            except Exception as exc:
                # An error answer (e.g. OOM under maxmemory): keep the worker alive, as
                # bullmq's does, and try again after the retry delay.
                log.error("worker for %s: fetching a job failed (%s); retrying in %g s",
                          self.queue, exc, self._retry_delay, extra={"queue": self.queue})
                await asyncio.sleep(self._retry_delay)
                continue
            if data:
                self._drained = False
                return self._job(data, job_id, token)
            self._drained = True
            self._block_until = int(delay_until or 0)
        return None

    def _move_to_active_args(self, token: str) -> tuple[list[str], list[Any]]:
        keys = self._scripts.getKeys(["wait", "active", "prioritized", "events", "stalled",
                                      "limiter", "delayed", "paused", "meta", "pc", "marker"])
        opts = msgpack.packb({"token": token, **self._active_opts}, use_bin_type=True)
        return keys, [self._scripts.keys[""], round(time.time() * 1000), opts]

    async def _scripts_call(self, name: str, keys: list[str], args: list[Any]) -> Any:
        script = self._commands[name]
        try:
            return await self._pipe.execute_command("EVALSHA", script.sha, len(keys), *keys,
                                                    *args)
        except NoScriptError:  # a restarted Redis lost its script cache: load it again
            script.sha = await self._pipe.script_load(script.script)
            return await self._pipe.execute_command("EVALSHA", script.sha, len(keys), *keys,
                                                    *args)

    async def _wait_for_marker(self) -> None:
        """Block on the marker key until a job may be there (or a delayed one is due)."""
        block_until = self._block_until
        if block_until:
            timeout = (block_until - time.time() * 1000) / 1000
            if timeout <= 0:
                return
            precise = timeout < _MAX_BLOCK
            wait = max(timeout - _REDIS_TIMER_SLACK, 0.001) if precise else _MAX_BLOCK
        else:
            precise = False
            wait = self._drain_delay
        result = await self._client.bzpopmin(self._marker, wait)
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
        if _LeanJob.fits(data):
            return _LeanJob(self._host, data, job_id, token)
        job = Job.fromJSON(self._host, data, job_id)
        job.token = token
        return job

    # -- one slot ----------------------------------------------------------------------

    async def _run_slot(self, job: Any) -> None:
        try:
            while job is not None:
                job = await self._process(job)
        finally:
            self._slots.release()

    async def _process(self, job: Any) -> Any:
        """Run one job; return the next job fetched with its completion, if any."""
        token = job.token
        self._active[job.id] = token
        extra = {"queue": self.queue, "job_id": job.id}
        try:
            if job.deferredFailure:
                # bullmq's stalled check marks a job that stalled too often; fail it here.
                reason = job.deferredFailure
                if reason == STALLED_TOO_OFTEN:
                    reason = stalled_reason(int(job.stalledCounter or 0), self._max_stalled)
                raise BullUnrecoverableError(reason)
            result = await run_job(self._service, self.queue, self.processor, job)
        except asyncio.CancelledError:
            # Forced close: the job keeps its lock until it expires, then the stalled
            # check of any worker moves it back to wait (at-least-once).
            self._active.pop(job.id, None)
            raise
        except Exception as exc:
            await self._fail(job, exc, token)
            self._active.pop(job.id, None)
            return None
        try:
            if isinstance(job, _LeanJob):
                keys, args = self._complete.build(
                    job.id, job.attempts, job.attemptsMade,
                    job.opts.get("removeOnComplete", False), token, result, not self._closing)
            else:
                keys, args = self._scripts.moveToCompletedArgs(
                    job, result, job.opts.get("removeOnComplete", False), token,
                    not self._closing)
            raw = await self._scripts_call("moveToFinished", keys, args)
        except _CONNECTION_ERRORS as exc:
            log.error("job %s on %s finished but Redis is unavailable (%s); its lock will "
                      "expire and it will run again", job.id, self.queue, exc, extra=extra)
            return None
        finally:
            self._active.pop(job.id, None)
        if isinstance(raw, int) and raw < 0:
            error = self._scripts.finishedErrors(
                {"code": raw, "jobId": job.id, "command": "moveToFinished", "state": "active"})
            log.error("job %s on %s: %s", job.id, self.queue, error, extra=extra)
            return None
        log.info("job %s on %s completed", job.id, self.queue, extra=extra)
        data, next_id, _limit, delay_until = raw2NextJobData(raw)
        if data and not self._closing:
            return self._job(data, next_id, token)
        if not data:
            self._drained = True
            self._block_until = int(delay_until or 0)
        return None

    async def _fail(self, job: Any, exc: BaseException, token: str) -> None:
        extra = {"queue": self.queue, "job_id": job.id}
        if isinstance(job, _LeanJob):
            job = job.bull()
        try:
            await job.moveToFailed(exc, token)
        except Exception as error:
            log.error("job %s on %s failed (%s) and could not be moved to failed: %s",
                      job.id, self.queue, exc, error, extra=extra)
            return
        log_failure(self.queue, job, exc)

    # -- background duties ---------------------------------------------------------------

    async def _renew_locks(self) -> None:
        while True:
            await asyncio.sleep(self._lock_duration / 2000)
            if not self._active:
                continue
            ids, tokens = list(self._active), list(self._active.values())
            try:
                lost = await self._scripts.extendJobLocks(ids, tokens, self._lock_duration)
            except Exception as exc:
                log.warning("worker for %s could not renew locks: %s", self.queue, exc,
                            extra={"queue": self.queue})
                continue
            for job_id in lost or []:
                if self._active.get(job_id) != dict(zip(ids, tokens, strict=True))[job_id]:
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
                            extra={"queue": self.queue})
            else:
                for job_id in stalled or []:
                    log.warning("job %s on %s stalled and was moved back to wait", job_id,
                                self.queue, extra={"queue": self.queue, "job_id": job_id})
            await asyncio.sleep(self._stalled_interval / 1000)

    # -- shutdown ------------------------------------------------------------------------

    async def close(self, timeout: float | None = None) -> None:
        if self._closed:
            return
        self._closing = True
        # The fetch loop may be waiting for a free slot or for the marker; the deadline
        # applies to the jobs, so stop fetching now.
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        work = set(self._work)
        if work:
            _, pending = await asyncio.wait(work, timeout=timeout)
            if pending:
                log.warning("worker for %s: %d job(s) still active after %s s; forcing "
                            "close (their locks expire and another worker re-runs them)",
                            self.queue, len(pending), timeout, extra={"queue": self.queue})
                for task in pending:
                    task.cancel()
                await asyncio.gather(*pending, return_exceptions=True)
        for task in self._background:
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        self._closed = True
        await self._pipe.aclose()
        await self._service.connection.release_worker_client(self._client)
        log.info("worker for %s closed", self.queue, extra={"queue": self.queue})


#: Fields of a job hash (and of its encoded options) that need bullmq's own ``Job``:
#: flows (parents), job schedulers, deduplication. Such jobs take bullmq's path.
_BULL_ONLY_FIELDS = ("parentKey", "parent", "rjk")
_BULL_ONLY_OPTS = ("fpof", "cpof", "idof", "rdof", "parent", "repeat", "de")


class _LeanJob:
    """A job read straight from its hash: what the hot path needs, nothing more.

    The fields mirror bullmq's ``Job`` (same names, same parsing); :meth:`bull` builds the
    real ``Job`` for the rare paths (failure, progress, logs).
    """

    __slots__ = ("_bull", "_host", "attempts", "attemptsMade", "data", "deferredFailure",
                 "delay", "failedReason", "finishedOn", "id", "name", "opts", "priority",
                 "processedOn", "progress", "raw", "returnvalue", "stalledCounter",
                 "timestamp", "token")

    def __init__(self, host: _JobHost, raw: dict[str, Any], job_id: str, token: str) -> None:
        self._host = host
        self._bull: Any = None
        self.raw = raw
        self.id = job_id
        self.token = token
        self.name = raw.get("name")
        self.data = json.loads(raw.get("data", "{}"))
        self.opts: dict[str, Any] = json.loads(raw.get("opts", "{}"))
        self.attempts = self.opts.get("attempts", 1)
        self.attemptsMade = int(raw.get("attemptsMade") or raw.get("atm") or 0)
        self.timestamp = int(raw.get("timestamp") or 0)
        self.processedOn = int(raw.get("processedOn") or 0)
        self.finishedOn = 0
        self.progress = json.loads(raw["progress"]) if "progress" in raw else 0
        self.delay = int(raw.get("delay") or 0)
        self.priority = int(raw.get("priority") or 0)
        self.deferredFailure = raw.get("defa")
        self.stalledCounter = int(raw.get("stc") or 0)
        self.failedReason = raw.get("failedReason")
        self.returnvalue = None

    @staticmethod
    def fits(raw: dict[str, Any]) -> bool:
        """Whether the lean path can handle this job hash."""
        if any(field in raw for field in _BULL_ONLY_FIELDS):
            return False
        opts = raw.get("opts", "")
        return not any(f'"{name}"' in opts for name in _BULL_ONLY_OPTS)

    def bull(self) -> Any:
        """bullmq's ``Job`` for this job (built once)."""
        if self._bull is None:
            self._bull = Job.fromJSON(self._host, self.raw, self.id)
            self._bull.token = self.token
        return self._bull

    async def updateProgress(self, progress: Any) -> None:  # noqa: N802 - bullmq's name
        await self.bull().updateProgress(progress)

    async def log(self, text: str) -> None:
        await self.bull().log(text)

