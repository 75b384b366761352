"""``SharedContainer``: the port of the NestJS ``SharedModule``.

``config`` (settings), ``registry`` (queue -> payload model), ``redis_connection`` (the
dedicated queue Redis, a Resource), ``breaker`` and ``queue_service`` (a Resource closed
on shutdown). Override ``queue_service`` with ``InMemoryQueueService`` to run without
Redis: nothing connects to Redis until ``queue_service`` is initialised.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from dependency_injector import containers, providers

from queuekit.memory import InMemoryQueueService
from queuekit.queues import QueueRegistry
from queuekit.redis import AsyncCircuitBreaker, QueueConnection, RedisQueueService, make_breaker
from queuekit.service import QueueService
from queuekit.settings import QueuekitSettings, load_settings

BackendFactory = Callable[[QueuekitSettings, QueueRegistry, QueueConnection,
                           AsyncCircuitBreaker], QueueService]


def _redis_backend(settings: QueuekitSettings, registry: QueueRegistry,
                   connection: QueueConnection, breaker: AsyncCircuitBreaker) -> QueueService:
    return RedisQueueService(settings, registry, connection=connection, breaker=breaker)


def _memory_backend(settings: QueuekitSettings, registry: QueueRegistry,
                    connection: QueueConnection, breaker: AsyncCircuitBreaker) -> QueueService:
    return InMemoryQueueService(settings, registry)


#: The queue service of each ``backend`` setting.
BACKENDS: dict[str, BackendFactory] = {"redis": _redis_backend, "memory": _memory_backend}


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
    """The queue service of ``settings.backend``, started (on Redis: the server checked)."""
    service = BACKENDS[settings.backend](settings, registry, connection, breaker)
    try:
        await service.start()
        yield service
    finally:
        await service.close()


class SharedContainer(containers.DeclarativeContainer):
    """Settings, the queue Redis connection, the breaker and the ``QueueService``."""

    config = providers.Singleton(load_settings)
    registry = providers.Singleton(QueueRegistry)
    redis_connection = providers.Resource(open_connection, settings=config)
    breaker = providers.Singleton(build_breaker, settings=config, connection=redis_connection)
    queue_service = providers.Resource(
        open_queue_service,
        settings=config,
        registry=registry,
        connection=redis_connection,
        breaker=breaker,
    )

    def __new__(cls, *args: object, **kwargs: object) -> SharedContainer:
        container = super().__new__(cls, *args, **kwargs)
        # Always awaitable, also when a test overrides it with a plain InMemoryQueueService.
        container.queue_service.enable_async_mode()
        return container
