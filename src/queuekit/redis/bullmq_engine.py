"""The bullmq package's worker machinery in queuekit's loop (``worker.engine: bullmq``).

Fetching is bullmq's ``Worker.getNextJob`` (its marker wait, ``moveToActive``, and the
job-scheduler step of ``nextJobFromJobData``, done by queuekit's ``SchedulerAdvancer``),
locks are renewed by bullmq's ``LockManager``, stalled jobs are moved back by its
stalled check, and jobs finish through bullmq's ``moveToCompleted`` /
``Job.moveToFailed``: two script calls per job, as bullmq's own worker does. Only the
idle wait is changed, so that delays and backoffs are honoured to within a few ms (see
:class:`_PreciseWorker`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import bullmq
from bullmq.timer import Timer

from queuekit.processors import Processor
from queuekit.redis.breaker import UNAVAILABLE_ERRORS
from queuekit.redis.schedules import SchedulerAdvancer
from queuekit.redis.wire import REDIS_TIMER_SLACK, bullmq_worker_options, worker_name
from queuekit.redis.worker import RedisWorker
from queuekit.worker import Failure

if TYPE_CHECKING:
    from queuekit.redis.service import RedisQueueService

log = logging.getLogger("queuekit.redis")


async def _no_hold() -> None:
    return None


class _PreciseWorker(bullmq.Worker):  # type: ignore[misc]
    """bullmq's ``Worker`` with delays and backoffs honoured to within a few ms.

    Only the idle wait changes: the blocking ``BZPOPMIN`` on the marker key ends
    ``REDIS_TIMER_SLACK`` before the next delayed job is due, and the remainder is slept
    locally (bullmq rounds the wait up to whole seconds). Scripts, keys, locks: bullmq's.
    """

    advance_scheduler: SchedulerAdvancer

    async def _scheduleNextIteration(self, job: Any) -> None:  # noqa: N802 - overrides bullmq
        await self.advance_scheduler(job)
    #: Set by the engine: wait out a rate limit before ``moveToActive`` (a job put back
    #: by a rate limit wakes the marker wait).
    hold: Callable[[], Awaitable[None]] = staticmethod(_no_hold)

    async def waitForJob(self) -> int:  # noqa: N802 - overrides bullmq
        block_until = int(self.blockUntil or 0)
        timeout = float(self.getBlockTimeout(block_until))
        precise = bool(block_until) and timeout < self.maximumBlockTimeout
        if precise:
            timeout = max(timeout - REDIS_TIMER_SLACK, self.minimumBlockTimeout)
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
            await self.hold()
            return int(float(score)) if member else 0
        if precise:
            remaining = block_until - time.time() * 1000
            if remaining > 0:
                await asyncio.sleep(remaining / 1000)
        await self.hold()
        return 0


class BullmqWorker(RedisWorker):
    """Jobs fetched, locked and finished by bullmq's ``Worker`` parts."""

    def __init__(self, service: RedisQueueService, queue: str, processor: Processor,
                 concurrency: int) -> None:
        super().__init__(service, queue, processor, concurrency)
        options = bullmq_worker_options(self._worker_settings, self.prefix, concurrency,
                                        worker_name(), queue)
        self._bull: Any = _PreciseWorker(queue, None, {"connection": self._client, **options})
        # bullmq's getNextJob advances job schedulers (nextJobFromJobData): the same step
        # as the fast engine's (queuekit's cron step and end_date check).
        self._bull.advance_scheduler = SchedulerAdvancer(self._bull.backend.scripts, queue)
        self._bull.hold = self._wait_out_limit
        self._bull.on("error", self._on_error)
        self._bull.on("stalled", self._log_stalled)
        self._stalled_timer: Any = None
        self._capped = False  # the queue has a global concurrency (meta.concurrency)

    async def _open(self) -> None:
        await super()._open()
        for conn in (self._bull.redisConnection, self._bull.blockingRedisConnection):
            self.connection.apply_to(conn)
        await self._bull._ensure_client_names()
        self._bull.lockManager.start()
        self._stalled_timer = Timer(self._bull.opts["stalledInterval"] / 1000,
                                    self._bull.runStalledJobsCheck, self._bull.emit)

    async def _fetch(self) -> Any:
        while not self._closing:
            await self._wait_out_limit()
            token = self._next_token()
            try:
                job = await self._bull.getNextJob(token)
            except asyncio.CancelledError:
                if self._closing:
                    return None
                raise
            except Exception as exc:
                level = logging.WARNING if isinstance(exc, UNAVAILABLE_ERRORS) else logging.ERROR
                log.log(level, "worker for %s: fetching a job failed (%s); retrying in %g s",
                        self.queue, exc, self._retry_delay, extra=self._extra)
                await asyncio.sleep(self._retry_delay)
                continue
            if job is not None:
                self._bull.lockManager.track_job(job.id, token, int(time.time() * 1000))
                return job
            self._after_rate_limit()
            await self._check_capped()
        return None

    def _after_rate_limit(self) -> None:
        # bullmq's Worker records the limiter's ttl but then blocks on the marker for
        # drainDelay; wait the ttl instead and fetch again right after it.
        ttl = int(self._bull.limitUntil or 0)
        if ttl > 0:
            self._limit_for(ttl)
            self._bull.drained = False

    async def _complete(self, job: Any, value: Any) -> Any:
        try:
            await self._bull.backend.moveToCompleted(
                job, value, job.opts.get("removeOnComplete", False), job.token,
                fetch_next=False)
        except UNAVAILABLE_ERRORS as exc:
            log.error("job %s on %s finished but Redis is unavailable (%s); its lock will "
                      "expire and it will run again", job.id, self.queue, exc,
                      extra={"queue": self.queue, "job_id": job.id})
            return None
        finally:
            self._untrack(job)
        self._log_completed(job.id)
        await self._nudge_if_capped()
        return None

    async def _fail(self, job: Any, error: BaseException, final: bool) -> Failure | None:
        failure = await super()._fail(job, error, final)
        await self._nudge_if_capped()
        return failure

    # -- global concurrency ----------------------------------------------------------
    # BullMQ hands a freed global-concurrency slot to the finishing worker's fetch-next;
    # this engine finishes without fetch-next, so workers blocked on the marker (here
    # and in other processes) would wait drainDelay. Under a cap, finishing a job adds
    # the marker, as an add does, so one of them takes the next job at once.

    async def _check_capped(self) -> None:
        try:
            self._capped = bool(await self._client.hexists(self._bull.keys["meta"],
                                                          "concurrency"))
        except UNAVAILABLE_ERRORS:
            self._capped = False

    async def _nudge_if_capped(self) -> None:
        if self._capped:
            with contextlib.suppress(*UNAVAILABLE_ERRORS):
                await self._client.zadd(self._bull.keys["marker"], {"0": 0})

    def _untrack(self, job: Any) -> None:
        self._bull.lockManager.untrack_job(job.id)

    def _on_error(self, err: BaseException, job: Any = None) -> None:
        log.error("worker for %s: %s", self.queue, err, extra=self._extra)

    async def _release(self, forced: bool) -> None:
        if self._stalled_timer is not None:
            self._stalled_timer.stop()
        await self._bull.close(force=forced)
        await super()._release(forced)
