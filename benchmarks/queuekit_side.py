"""queuekit (Redis backend), measured through its public API only.

The service is built the way an application builds it: ``containers.SharedContainer``
configured by the environment (``QUEUEKIT_REDIS__URL`` names the benchmark's Redis),
``await container.init_resources()``, ``await container.queue_service()``. Jobs go in
through ``QueueService.add_job`` / ``add_jobs``, and are processed by a worker from
``QueueService.create_worker``; ``get_job_counts`` tells when the queue is drained;
``container.shutdown_resources()`` closes everything.

This module was written against the contract in ``DESIGN.md`` while the library was
being written. The places marked ``TODO(queuekit)`` are the assumptions to check once
``import queuekit`` works; until then :meth:`QueuekitSide.unavailable_reason` reports
why it cannot run and the benchmark leaves this column out.

The library is imported with :func:`importlib.import_module` and kept ``Any`` here, so
this module type-checks whether or not the library is importable yet.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import os
from collections.abc import Callable, Mapping
from typing import Any, Final

from benchmarks.common import BULLMQ_PREFIX, JOB_NAME, events_key
from benchmarks.sides import JobCounts

REDIS_URL_ENV: Final = "QUEUEKIT_REDIS__URL"


def _queuekit() -> Any:
    return importlib.import_module("queuekit")


def _containers() -> Any:
    return importlib.import_module("containers")


def _count(counts: Any, name: str) -> int:
    # TODO(queuekit): get_job_counts returns "waiting, active, delayed, completed, failed"
    # (DESIGN.md); whether as a mapping or as a model is not fixed yet -- accept both.
    if isinstance(counts, Mapping):
        return int(counts.get(name, 0) or 0)
    return int(getattr(counts, name, 0) or 0)


class _Service:
    """A SharedContainer and the QueueService it provides, pointed at ``redis_url``."""

    def __init__(self, container: Any, service: Any) -> None:
        self.container = container
        self.service = service

    @classmethod
    async def open(cls, redis_url: str) -> _Service:
        # The benchmark process owns its environment; the variable is how DESIGN.md says
        # the Redis server is chosen. The worker subprocess inherits it too.
        os.environ[REDIS_URL_ENV] = redis_url
        container = _containers().SharedContainer()
        await container.init_resources()
        service = await container.queue_service()
        return cls(container, service)

    async def close(self) -> None:
        await self.container.shutdown_resources()


def _job_data(index: int) -> Any:
    # The same payload as benchmarks.common.payload(index), as the pydantic model.
    # TODO(queuekit): the benchmark uses a fresh queue name per measurement, not
    # QueueName.BANK_SYNC; DESIGN.md says other names are allowed once a plugin registers
    # their payload model. If add_job/create_worker need that registration, do it in
    # _Service.open (or in QueuekitProducer/QueuekitWorkerSession) for BankSyncJobData.
    return _queuekit().BankSyncJobData(
        user_id=f"user-{index}", account_id=f"acct-{index}", sync_type="incremental"
    )


class QueuekitProducer:
    """Adds jobs with ``QueueService.add_job`` and ``QueueService.add_jobs``."""

    def __init__(self, service: _Service, queue: str) -> None:
        self._service = service
        self._queue = queue

    @property
    def events_key(self) -> str:
        # TODO(queuekit): if queuekit's config sets a key prefix other than BullMQ's "bull",
        # read it from the container's config here.
        return events_key(self._queue, BULLMQ_PREFIX)

    async def add_one(self, index: int) -> str:
        # Options are queuekit's configured defaults (the same as the raw sides' options).
        job = await self._service.service.add_job(self._queue, JOB_NAME, _job_data(index))
        return str(job.id)

    async def add_bulk(self, first: int, count: int) -> None:
        # TODO(queuekit): the shape of add_jobs' argument is not in DESIGN.md yet; this
        # assumes (job name, data) pairs. Adjust to the real signature (it may take
        # mappings or a dedicated model, and possibly per-job options).
        await self._service.service.add_jobs(
            self._queue, [(JOB_NAME, _job_data(i)) for i in range(first, first + count)]
        )

    async def aclose(self) -> None:
        await self._service.close()


class QueuekitWorkerSession:
    """A worker from ``QueueService.create_worker`` with a no-op processor."""

    def __init__(self, service: _Service, queue: str) -> None:
        self._service = service
        self._queue = queue

    async def start(self, concurrency: int, on_processed: Callable[[], None]) -> None:
        job_result = _queuekit().JobResult

        async def process(job: Any) -> Any:
            on_processed()
            return job_result(success=True)

        worker = self._service.service.create_worker(self._queue, process, concurrency=concurrency)
        if inspect.isawaitable(worker):  # TODO(queuekit): drop once create_worker's kind is fixed
            await worker

    async def job_counts(self) -> JobCounts:
        counts = await self._service.service.get_job_counts(self._queue)
        return JobCounts(
            waiting=_count(counts, "waiting") + _count(counts, "prioritized"),
            active=_count(counts, "active"),
            delayed=_count(counts, "delayed"),
            failed=_count(counts, "failed"),
        )

    async def aclose(self) -> None:
        # Shutting the container down closes the workers first, then queues and the pool.
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
            version = getattr(_queuekit(), "__version__", "source tree")
            return {"queuekit": str(version)}

    async def open_producer(
        self, redis_url: str, queue: str, bullmq_options: Mapping[str, Any]
    ) -> QueuekitProducer:
        # bullmq_options is ignored on purpose: queuekit applies its configured defaults,
        # which are what the raw sides pass (see benchmarks.common.QUEUEKIT_DEFAULT_JOB_OPTIONS).
        return QueuekitProducer(await _Service.open(redis_url), queue)

    async def open_worker(self, redis_url: str, queue: str) -> QueuekitWorkerSession:
        return QueuekitWorkerSession(await _Service.open(redis_url), queue)


SIDE: Final = QueuekitSide()
