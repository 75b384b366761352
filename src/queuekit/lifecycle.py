"""Async resources for a composition root: open on start, close on shutdown.

These are plain async generators (no dependency-injector import): the container in
``containers/`` wraps each in a ``Resource`` provider, and any other host can drive
them with ``contextlib.asynccontextmanager``.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from queuekit.breaker import AsyncCircuitBreaker, make_breaker
from queuekit.connection import QueueConnection
from queuekit.queues import QueueRegistry
from queuekit.redis_service import RedisQueueService
from queuekit.service import Processor, QueueService, QueueWorker
from queuekit.settings import QueuekitSettings

log = logging.getLogger("queuekit.lifecycle")


async def open_connection(settings: QueuekitSettings) -> AsyncIterator[QueueConnection]:
    """The dedicated queue Redis pools. Opening makes no network call; closing drops all."""
    connection = QueueConnection(settings.redis)
    try:
        yield connection
    finally:
        await connection.close()


def build_breaker(settings: QueuekitSettings, connection: QueueConnection) -> AsyncCircuitBreaker:
    """The circuit breaker in front of the queue Redis."""
    return AsyncCircuitBreaker(make_breaker(settings.breaker),
                               target=f"Redis at {connection.url}")


async def open_queue_service(
    settings: QueuekitSettings,
    registry: QueueRegistry,
    connection: QueueConnection,
    breaker: AsyncCircuitBreaker,
) -> AsyncIterator[QueueService]:
    """The queue service of ``settings.backend``; on Redis it checks the server first."""
    service: QueueService
    if settings.backend == "memory":
        from queuekit.testing import InMemoryQueueService

        service = InMemoryQueueService(settings, registry)
    else:
        redis_service = RedisQueueService(settings, registry, connection=connection,
                                          breaker=breaker)
        await redis_service.start()
        service = redis_service
    try:
        yield service
    finally:
        await service.close()


def worker_enabled(settings: QueuekitSettings, queue: str) -> bool:
    """Whether this process runs a worker for ``queue`` (``worker.enabled``/``queues``)."""
    if not settings.worker.enabled:
        return False
    return settings.worker.queues is None or str(queue) in settings.worker.queues


async def run_worker(
    queue_service: QueueService,
    queue: str,
    processor: Processor,
    concurrency: int | None = None,
) -> AsyncIterator[QueueWorker | None]:
    """A worker on ``queue`` while the resource is open (None when disabled here)."""
    if not worker_enabled(queue_service.settings, queue):
        log.info("worker for %s disabled in this process", queue, extra={"queue": str(queue)})
        yield None
        return
    worker = queue_service.create_worker(queue, processor, concurrency=concurrency)
    try:
        yield worker
    finally:
        await worker.close(queue_service.settings.worker.shutdown_timeout)
