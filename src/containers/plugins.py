"""Plugins in the container: processor classes built with their dependencies injected.

A processor's constructor parameters are resolved by name, the way NestJS resolves a
provider by token: first the plugins' own ``services``, then the application container's
providers (``banking_service``, ...), then the shared module's (``queue_service``,
``registry``, ``config``, also reachable as ``settings``). A parameter with a default may
be left unresolved; any other missing name stops start-up with the names that exist.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import AsyncIterator, Callable, Collection
from typing import Any, TypeVar, cast

from dependency_injector import containers, providers

from containers.runtime import resolve
from queuekit.errors import ConfigurationError
from queuekit.processors import FunctionProcessor, as_async, concurrency_of, name_of, queue_of
from queuekit.runtime.plugins import PluginSet, ProcessorBinding, effective_concurrency
from queuekit.runtime.runner import worker_enabled
from queuekit.service import QueueService
from queuekit.worker import QueueWorker

log = logging.getLogger("queuekit.plugins")

T = TypeVar("T")

#: Parameter names that mean another provider.
ALIASES = {"settings": "config"}
#: Application providers a processor cannot take (built from the processors, or the
#: injector itself).
_NOT_INJECTABLE = frozenset({"workers", "injector"})


class Injector:
    """Builds objects whose constructor parameters name providers of ``container``."""

    def __init__(self, container: containers.Container, plugins: PluginSet) -> None:
        self.container = container
        self.plugins = plugins
        self._services: dict[str, object] = {}
        self._building: list[str] = []

    def _scopes(self) -> list[dict[str, providers.Provider[Any]]]:
        scopes = [dict(self.container.providers)]
        shared: Any = self.container.providers.get("shared")
        if isinstance(shared, providers.Container):
            # the stubs type a Container provider's ``providers`` as a provider
            scopes.append(cast("dict[str, providers.Provider[Any]]", shared.providers))
        return [{name: provider for name, provider in scope.items()
                 if name not in _NOT_INJECTABLE
                 and not isinstance(provider, providers.Container)} for scope in scopes]

    def _provider(self, name: str) -> providers.Provider[Any] | None:
        name = ALIASES.get(name, name)
        for scope in self._scopes():
            if name in scope:
                return scope[name]
        return None

    def available(self) -> list[str]:
        """Every name a constructor parameter can take."""
        names = set(ALIASES)
        for plugin in self.plugins:
            names.update(plugin.services)
        for scope in self._scopes():
            names.update(scope)
        return sorted(names)

    async def plugin_service(self, name: str) -> object:
        """The plugin service ``name`` (built once); :class:`ConfigurationError` if no
        loaded plugin provides it."""
        found, value = await self._plugin_service(name)
        if not found:
            provided = sorted({s for plugin in self.plugins for s in plugin.services})
            raise ConfigurationError(
                f"no loaded plugin provides the service {name!r} (plugins: "
                f"{', '.join(self.plugins.names) or 'none'}; their services: "
                f"{', '.join(provided) or 'none'})"
            )
        return value

    async def get(self, name: str, needed_by: str) -> tuple[bool, object]:
        """(found, value) of the dependency ``name``."""
        found, value = await self._plugin_service(name)
        if found:
            return True, value
        provider = self._provider(name)
        if provider is None:
            return False, None
        return True, await resolve(provider)

    async def _plugin_service(self, name: str) -> tuple[bool, object]:
        if name in self._services:
            return True, self._services[name]
        factory = self.plugins.service(name)
        if factory is not None:
            if name in self._building:
                chain = " -> ".join([*self._building, name])
                raise ConfigurationError(f"plugin services depend on each other in a cycle: "
                                         f"{chain}")
            self._building.append(name)
            try:
                value = await self.build(factory, f"service {name!r}")
            finally:
                self._building.pop()
            self._services[name] = value
            return True, value
        return False, None

    async def build(self, factory: Callable[..., T], needed_by: str) -> T:
        """Call ``factory`` with each parameter resolved by name."""
        kwargs: dict[str, object] = {}
        for param in inspect.signature(factory).parameters.values():
            if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                continue
            found, value = await self.get(param.name, needed_by)
            if found:
                kwargs[param.name] = value
            elif param.default is param.empty:
                raise ConfigurationError(
                    f"{needed_by} takes {param.name!r} in its constructor, but neither the "
                    f"container nor a plugin service provides it; available: "
                    f"{', '.join(self.available())}"
                )
        return factory(**kwargs)


async def build_processors(container: containers.Container, plugins: PluginSet | None = None,
                           *, queues: Collection[str] | None = None,
                           injector: Injector | None = None) -> list[ProcessorBinding]:
    """The plugins' processors, built with their dependencies (only those of ``queues``
    when given, so a process that runs no worker builds no processor). With the host's
    ``injector``, plugin services are the host's single instances."""
    loaded: PluginSet = plugins if plugins is not None else await resolve(container.plugins)
    if injector is None or injector.plugins is not loaded:
        injector = Injector(container, loaded)
    bindings = []
    for plugin, spec in loaded.processors():
        queue = queue_of(spec)
        if queues is not None and queue not in queues:
            continue
        name = name_of(spec)
        if isinstance(spec, FunctionProcessor):
            function = as_async(spec.function)
        else:
            host = await injector.build(spec, f"processor {name} of plugin {plugin.name!r}")
            function = host.as_processor()
        bindings.append(ProcessorBinding(queue, function, concurrency_of(spec), plugin.name,
                                         name))
    return bindings


async def run_plugin_workers(
    container: containers.Container,
    queue_service: QueueService,
    plugins: PluginSet,
    injector: Injector | None = None,
) -> AsyncIterator[dict[str, QueueWorker]]:
    """A worker per plugin queue enabled in this process, while the resource is open."""
    settings = queue_service.settings
    plugins.register_queues(queue_service.registry)  # also when the service is overridden
    enabled = []
    for queue in plugins.processor_queues():
        if worker_enabled(settings, queue):
            enabled.append(queue)
        else:
            log.info("worker for %s disabled in this process", queue, extra={"queue": queue})
    workers: dict[str, QueueWorker] = {}
    try:
        for binding in await build_processors(container, plugins, queues=enabled,
                                              injector=injector):
            concurrency = effective_concurrency(settings, binding.queue, binding.concurrency)
            workers[binding.queue] = queue_service.create_worker(
                binding.queue, binding.processor, concurrency=concurrency)
        yield workers
    finally:
        timeout = settings.worker.shutdown_timeout
        await asyncio.gather(*(worker.close(timeout) for worker in workers.values()))
