"""``SharedContainer``: the port of the NestJS ``SharedModule``.

``config`` (settings), ``registry`` (queue -> payload model), ``redis_connection`` (the
dedicated queue Redis, a Resource), ``breaker`` and ``queue_service`` (a Resource closed
on shutdown). Override ``queue_service`` with ``InMemoryQueueService`` to run without
Redis: nothing connects to Redis until ``queue_service`` is initialised.
"""

from __future__ import annotations

from dependency_injector import containers, providers

from queuekit.lifecycle import build_breaker, open_connection, open_queue_service
from queuekit.queues import QueueRegistry
from queuekit.settings import load_settings


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
