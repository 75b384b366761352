"""The plugin host for commands and the demo: the application container with its plugins
and a started queue service; its workers only when asked (``queuekit worker`` starts them
through ``runner.serve`` instead; ``stats``, ``jobs``, ``retry`` and ``health`` start
none). Implements :class:`queuekit.runtime.host.Host`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection
from contextlib import asynccontextmanager
from dataclasses import dataclass

from containers.application import ApplicationContainer
from containers.plugins import Injector, build_processors
from containers.runtime import resolve, start, stop
from queuekit.runtime.host import PluginCheck
from queuekit.runtime.plugins import PluginSet, ProcessorBinding
from queuekit.service import QueueService
from queuekit.settings import QueuekitSettings


@dataclass(frozen=True)
class ContainerHost:
    """An application container with its plugins loaded and its queue service started."""

    container: ApplicationContainer
    plugins: PluginSet
    service: QueueService

    async def processors(self, queues: Collection[str]) -> list[ProcessorBinding]:
        """The plugins' processors of ``queues``, built with their dependencies."""
        injector: Injector = await resolve(self.container.injector)
        return await build_processors(self.container, self.plugins, queues=queues,
                                      injector=injector)

    async def get(self, name: str) -> object:
        """A plugin service, or a provider of the container, by name."""
        injector: Injector = await resolve(self.container.injector)
        found, value = await injector.get(name, "the host")
        if not found:
            await injector.plugin_service(name)  # raises, naming what exists
        return value


@asynccontextmanager
async def open_host(settings: QueuekitSettings, check: PluginCheck | None = None, *,
                    workers: bool = False) -> AsyncIterator[ContainerHost]:
    """Load the plugins, run ``check`` on them (so a configuration error is reported
    before any connection), start the queue service (failing fast when Redis is
    unreachable) and, with ``workers``, every resource; on exit shut all down."""
    container = ApplicationContainer()
    container.shared.config.override(settings)
    try:
        plugins = await resolve(container.plugins)
        if check is not None:
            check(plugins)
        if workers:
            await start(container)
        service = await resolve(container.shared.queue_service)
        yield ContainerHost(container, plugins, service)
    finally:
        await stop(container)
