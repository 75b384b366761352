"""What both Redis worker engines share on top of the :class:`BaseWorker` template.

A dedicated connection pool without socket timeout (the idle wait blocks in
``BZPOPMIN``), lock tokens, bullmq's ``Job.moveToFailed`` for failed attempts (retries
and backoff as BullMQ computes them), the deferred failure of a job that stalled too
often, and the log line of a stalled job.
"""

from __future__ import annotations

import itertools
import logging
import uuid
from typing import TYPE_CHECKING, Any

from bullmq.custom_errors import UnrecoverableError as BullUnrecoverableError

from queuekit.jobs import JobReporter
from queuekit.processors import Processor
from queuekit.records import RawJob
from queuekit.redis.cancel import CancelListener
from queuekit.redis.jobs import BullJobReporter, LeanJob, raw_from_bull
from queuekit.redis.wire import STALLED_TOO_OFTEN, max_attempts, stalled_reason
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
        self.prefix = service.prefix
        self._client = service.connection.worker_client()
        settings = service.settings.worker
        self._worker_settings = settings
        self._max_stalled = settings.max_stalled_count
        self._retry_delay = settings.run_retry_delay / 1000
        self._id = uuid.uuid4().hex
        self._tokens = itertools.count(1)
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

    def _log_stalled(self, job_id: str) -> None:
        log.warning("job %s on %s stalled and was moved back to wait", job_id, self.queue,
                    extra={"queue": self.queue, "job_id": job_id})

    async def _release(self, forced: bool) -> None:
        await self._cancel_listener.stop()
        await self.connection.release_worker_client(self._client)
