"""What both Redis worker engines share on top of the :class:`BaseWorker` template.

A dedicated connection pool without socket timeout (the idle wait blocks in
``BZPOPMIN``), lock tokens, bullmq's ``Job.moveToFailed`` for failed attempts (retries
and backoff as BullMQ computes them), the deferred failure of a job that stalled too
often, and the log line of a stalled job.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
import uuid
from typing import TYPE_CHECKING, Any

from bullmq.custom_errors import UnrecoverableError as BullUnrecoverableError

from queuekit.jobs import JobReporter
from queuekit.processors import Processor
from queuekit.records import RawJob
from queuekit.redis.breaker import UNAVAILABLE_ERRORS
from queuekit.redis.cancel import CancelListener
from queuekit.redis.controls import register_bullmq_script
from queuekit.redis.jobs import BullJobReporter, LeanJob, raw_from_bull
from queuekit.redis.keys import MOVE_ACTIVE_TO_WAIT_KEYS
from queuekit.redis.wire import (
    MANUAL_RATE_LIMIT,
    MAX_RATE_LIMIT_WAIT,
    STALLED_TOO_OFTEN,
    limiter_options,
    max_attempts,
    stalled_reason,
)
from queuekit.worker import BaseWorker, Failure

if TYPE_CHECKING:
    from queuekit.redis.service import RedisQueueService

log = logging.getLogger("queuekit.redis")


class RedisWorker(BaseWorker[Any]):
    """A worker on BullMQ's queue keys; the engines differ in how they fetch and finish."""

    _forced_close_note = "their locks expire and another worker re-runs them"

    def __init__(self, service: RedisQueueService, queue: str, processor: Processor,
                 concurrency: int) -> None:
        self.connection = service.connection
        self.prefix = service.queue_prefix(queue)
        self._redis_service = service
        self._client = service.connection.worker_client()
        settings = service.settings.worker
        self._worker_settings = settings
        self._max_stalled = settings.max_stalled_count
        self._retry_delay = settings.run_retry_delay / 1000
        self._id = uuid.uuid4().hex
        self._tokens = itertools.count(1)
        self._limiter = limiter_options(settings.limiter.get(queue))
        self._limited_until = 0.0  # epoch ms: no fetch before (a rate limit's window)
        self._to_wait_script: Any = None
        self._flows = service.flows
        self._cancel_listener = CancelListener(self._client, self.prefix, queue,
                                               self.cancel_running, self._retry_delay)
        super().__init__(service, queue, processor, concurrency)

    def _next_token(self) -> str:
        return f"{self._id}:{next(self._tokens)}"

    async def _open(self) -> None:
        await self.connection.server_info()
        await self._cancel_listener.start()

    async def _children_values(self, job: Any) -> dict[str, Any]:
        return await self._flows.children_values(self.queue, job.id)

    def _raw(self, job: Any) -> RawJob:
        if type(job) is LeanJob:
            return job.to_raw("active")
        return raw_from_bull(job, "active")

    def _reporter(self, job: Any) -> JobReporter:
        return BullJobReporter(job)

    def _refusal(self, job: Any) -> str | None:
        reason = job.deferredFailure
        if not reason:
            return None
        if reason == STALLED_TOO_OFTEN:
            return stalled_reason(int(job.stalledCounter or 0), self._max_stalled)
        return str(reason)

    async def _fail(self, job: Any, error: BaseException, final: bool) -> Failure | None:
        bull = job.bull() if isinstance(job, LeanJob) else job
        if final and not isinstance(error, BullUnrecoverableError):
            error = BullUnrecoverableError(str(error))
        try:
            await bull.moveToFailed(error, job.token)
        except Exception as exc:
            log.error("job %s on %s failed (%s) and could not be moved to failed: %s",
                      job.id, self.queue, error, exc,
                      extra={"queue": self.queue, "job_id": job.id})
            return None
        finally:
            self._untrack(job)
        attempts, made = max_attempts(bull.opts), int(bull.attemptsMade or 0)
        return Failure(made, attempts, will_retry=not final and made < attempts)

    async def _abandon(self, job: Any) -> None:
        # The job keeps its lock until it expires; then the stalled check of any worker
        # moves it back to wait (at-least-once).
        self._untrack(job)

    def _untrack(self, job: Any) -> None:
        """Stop renewing ``job``'s lock."""

    # -- rate limits -------------------------------------------------------------------

    def _limit_for(self, ttl_ms: int) -> None:
        """Fetch nothing for ``ttl_ms`` (capped as Node's worker caps it)."""
        until = time.time() * 1000 + min(ttl_ms, MAX_RATE_LIMIT_WAIT)
        self._limited_until = max(self._limited_until, until)

    def _is_limited(self) -> bool:
        return self._limited_until > time.time() * 1000

    async def _wait_out_limit(self) -> None:
        """Sleep until the rate limit's window ends: moveToActive answered with its
        ttl, so waiting the ttl (not drainDelay) starts the next job on time."""
        remaining = self._limited_until - time.time() * 1000
        if remaining > 0:
            await asyncio.sleep(remaining / 1000)

    async def _rate_limited(self, job: Any, delay_ms: int) -> None:
        # Held before the job goes back: putting it back wakes this worker's fetch.
        self._limit_for(delay_ms)
        self._untrack(job)
        scripts = self._redis_service.get_queue(self.queue).scripts
        keys = scripts.getKeys(list(MOVE_ACTIVE_TO_WAIT_KEYS))
        if self._to_wait_script is None:
            self._to_wait_script = register_bullmq_script(self._client,
                                                          "moveJobFromActiveToWait-9")
        # BullMQ's manual rate limit (Queue.rateLimit), then the job back to wait with
        # its attempts unchanged (Job.moveToWait).
        extra = {"queue": self.queue, "job_id": job.id}
        try:
            if delay_ms > 0:
                await self._client.set(keys[5], MANUAL_RATE_LIMIT, px=delay_ms)
            result = int(await self._to_wait_script(
                keys=keys, args=[job.id, job.token, f"{scripts.keys['']}{job.id}"]))
        except UNAVAILABLE_ERRORS as exc:
            log.error("job %s on %s was rate limited but Redis is unavailable (%s); its "
                      "lock expires and it runs again", job.id, self.queue, exc, extra=extra)
            return
        if result < 0:
            log.error("job %s on %s: could not move it back to wait (code %d); its lock "
                      "expires and it runs again", job.id, self.queue, result, extra=extra)
        self._limit_for(result)

    def _log_stalled(self, job_id: str) -> None:
        log.warning("job %s on %s stalled and was moved back to wait", job_id, self.queue,
                    extra={"queue": self.queue, "job_id": job_id})

    async def _release(self, forced: bool) -> None:
        await self._cancel_listener.stop()
        await self.connection.release_worker_client(self._client)
