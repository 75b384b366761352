"""The plugin host for commands: the application container with its plugins and a started
queue service, but no workers yet (``queuekit worker`` starts them through
``runner.serve``; ``stats``, ``jobs``, ``retry`` and ``health`` start none)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Collection
from contextlib import asynccontextmanager
from dataclasses import dataclass

from containers.application import ApplicationContainer
from containers.plugins import build_processors
from containers.runtime import resolve, stop
from queuekit.plugins import PluginSet, ProcessorBinding
from queuekit.service import QueueService
from queuekit.settings import QueuekitSettings


@dataclass(frozen=True)
class Host:
    """An application container with its plugins loaded and its queue service started."""

    container: ApplicationContainer
    plugins: PluginSet
    service: QueueService

    async def processors(self, queues: Collection[str]) -> list[ProcessorBinding]:
        """The plugins' processors of ``queues``, built with their dependencies."""
        return await build_processors(self.container, self.plugins, queues=queues)


@asynccontextmanager
async def open_host(settings: QueuekitSettings,
                    check: Callable[[PluginSet], object] | None = None) -> AsyncIterator[Host]:
    """Load the plugins, run ``check`` on them (so a configuration error is reported
    before any connection), start the queue service (failing fast when Redis is
    unreachable); on exit shut every resource down."""
    container = ApplicationContainer()
    container.shared.config.override(settings)
    try:
        plugins = await resolve(container.plugins)
        if check is not None:
            check(plugins)
        service = await resolve(container.shared.queue_service)
        yield Host(container, plugins, service)
    finally:
        await stop(container)
