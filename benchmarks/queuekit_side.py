"""queuekit (Redis backend), measured through its public API only.

The service is built the way an application builds it: ``containers.SharedContainer``
configured by the environment (``QUEUEKIT_REDIS__URL`` names the benchmark's Redis),
``await container.init_resources()``, then ``container.queue_service()``. Jobs go in
through ``QueueService.add_job`` / ``add_jobs``, a worker comes from
``QueueService.create_worker``, ``get_job_counts`` tells when the queue is drained, and
``container.shutdown_resources()`` closes everything.

Each measurement uses a fresh queue name, registered for ``BankSyncJobData`` in the
container's ``QueueRegistry`` (the way a plugin registers its own queue). Until
``import queuekit`` works, :meth:`QueuekitSide.unavailable_reason` says why and the
benchmark reports the column as not available.

The library is imported with :func:`importlib.import_module` and kept ``Any`` here, so
this module type-checks whether or not the library is importable.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import inspect
import os
from collections.abc import Callable, Mapping
from typing import Any, Final

from benchmarks.common import JOB_NAME, events_key
from benchmarks.sides import JobCounts

REDIS_URL_ENV: Final = "QUEUEKIT_REDIS__URL"


def _queuekit() -> Any:
    return importlib.import_module("queuekit")


def _containers() -> Any:
    return importlib.import_module("containers")


@functools.cache
def _payload_model() -> Any:
    return _queuekit().BankSyncJobData


def _job_data(index: int) -> Any:
    # The same payload as benchmarks.common.payload(index), as the pydantic model (the
    # class looked up once: an application imports it once, not per job).
    return _payload_model()(
        user_id=f"user-{index}", account_id=f"acct-{index}", sync_type="incremental"
    )


class _Service:
    """A SharedContainer, the QueueService it provides, and the benchmark's queue."""

    def __init__(self, container: Any, service: Any, queue: str) -> None:
        self.container = container
        self.service = service
        self.queue = queue

    @classmethod
    async def open(cls, redis_url: str, queue: str) -> _Service:
        # The benchmark process owns its environment; the variable is how DESIGN.md says
        # the Redis server is chosen.
        os.environ[REDIS_URL_ENV] = redis_url
        container = _containers().SharedContainer()
        await container.init_resources()
        service = container.queue_service()
        if inspect.isawaitable(service):  # an async Resource may hand out an awaitable
            service = await service
        container.registry().register(queue, _queuekit().BankSyncJobData)
        return cls(container, service, queue)

    @property
    def events_key(self) -> str:
        return events_key(self.queue, str(self.service.settings.redis.prefix))

    async def close(self) -> None:
        # Workers first, then queues, then the Redis pool (DESIGN.md, Lifecycle).
        await self.container.shutdown_resources()


class QueuekitProducer:
    """Adds jobs with ``QueueService.add_job`` and ``QueueService.add_jobs``."""

    def __init__(self, service: _Service) -> None:
        self._service = service

    @property
    def events_key(self) -> str:
        return self._service.events_key

    async def add_one(self, index: int) -> str:
        # No options: queuekit applies its configured defaults, which the raw sides copy.
        job = await self._service.service.add_job(self._service.queue, JOB_NAME, _job_data(index))
        return str(job.id)

    async def add_bulk(self, first: int, count: int) -> None:
        await self._service.service.add_jobs(
            self._service.queue, [(JOB_NAME, _job_data(i)) for i in range(first, first + count)]
        )

    async def add_schedulers(self, count: int) -> None:
        """``count`` hourly job schedulers: each one's first run is due now."""
        service = self._service.service
        for index in range(count):
            await service.upsert_job_scheduler(self._service.queue, f"bench-{index}",
                                               every=3600_000, name=JOB_NAME,
                                               data=_job_data(index))
    async def wait_finished(self, job_id: str) -> None:
        info = await self._service.service.wait_for_job(self._service.queue, job_id, timeout=30)
        if str(info.state) != "completed":
            raise RuntimeError(f"job {job_id} ended {info.state}: {info.failed_reason}")

    async def aclose(self) -> None:
        await self._service.close()


class QueuekitWorkerSession:
    """A worker from ``QueueService.create_worker`` with a no-op processor."""

    def __init__(self, service: _Service) -> None:
        self._service = service

    async def start(self, concurrency: int, on_processed: Callable[[], None]) -> None:
        job_result = _queuekit().JobResult

        async def process(job: Any) -> Any:
            on_processed()
            return job_result(success=True)

        self._service.service.create_worker(self._service.queue, process, concurrency=concurrency)

    async def job_counts(self) -> JobCounts:
        counts: Mapping[str, int] = await self._service.service.get_job_counts(self._service.queue)
        return JobCounts(
            waiting=counts.get("waiting", 0) + counts.get("prioritized", 0),
            active=counts.get("active", 0),
            delayed=counts.get("delayed", 0),
            failed=counts.get("failed", 0),
        )

    async def set_paused(self, paused: bool) -> None:
        service, queue = self._service.service, self._service.queue
        await (service.pause(queue) if paused else service.resume(queue))

    async def aclose(self) -> None:
        await self._service.close()


class QueuekitSide:
    """The queuekit side (Redis backend)."""

    key = "queuekit"
    label = "queuekit (Redis)"

    def unavailable_reason(self) -> str | None:
        try:
            queuekit = _queuekit()
            containers = _containers()
        except ImportError as err:
            return f"not available ({err})"
        missing = [
            name
            for module, names in (
                (queuekit, ("QueueService", "BankSyncJobData", "JobResult")),
                (containers, ("SharedContainer",)),
            )
            for name in names
            if not hasattr(module, name)
        ]
        if missing:
            return f"not available (missing {', '.join(missing)})"
        return None

    def versions(self) -> dict[str, str]:
        try:
            return {"queuekit": importlib.metadata.version("queuekit")}
        except importlib.metadata.PackageNotFoundError:
            return {"queuekit": str(getattr(_queuekit(), "__version__", "source tree"))}

    async def open_producer(
        self, redis_url: str, queue: str, bullmq_options: Mapping[str, Any]
    ) -> QueuekitProducer:
        # bullmq_options is ignored on purpose: queuekit applies its configured defaults,
        # the same as benchmarks.common.QUEUEKIT_DEFAULT_JOB_OPTIONS.
        return QueuekitProducer(await _Service.open(redis_url, queue))

    async def open_worker(self, redis_url: str, queue: str) -> QueuekitWorkerSession:
        return QueuekitWorkerSession(await _Service.open(redis_url, queue))


SIDE: Final = QueuekitSide()
