"""``ApplicationContainer``: the plugin host, with the shared module and the plugins.

``plugins`` are the modules named in the configuration (``plugins:``) and those installed
under the ``queuekit.plugins`` entry-point group; their queues are registered in
``shared.registry``, their ``services`` are built once per container by ``injector``
(constructor parameters resolved by name), and their processors run in ``workers``, one
worker per queue that ``worker.enabled`` / ``worker.queues`` allow in this process.

``banking_service``, ``notification_service`` and ``report_service`` resolve the demo
plugin's services of those names (``queuekit.demo.plugin``, named in ``config.yaml``):
they were this container's own providers before the demo became a plugin, and stay for
the code that resolves them.

The worker resource takes ``queue_service`` as a direct argument, so dependency-injector
shuts it down before the service, and the service before the Redis pools.
"""

from __future__ import annotations

from typing import Any

from dependency_injector import containers, providers

from containers.plugins import Injector, run_plugin_workers
from containers.shared import SharedContainer
from queuekit.runtime.plugins import load_plugins, plugin_registry
from queuekit.runtime.schedules import schedules_resource


async def _plugin_service(injector: Injector, name: str) -> Any:
    return await injector.plugin_service(name)


class ApplicationContainer(containers.DeclarativeContainer):
    """The shared module, the plugins, their services and the workers of this process."""

    __self__ = providers.Self()
    shared = providers.Container(SharedContainer)
    plugins = providers.Singleton(load_plugins, settings=shared.config)
    injector = providers.Singleton(Injector, container=__self__, plugins=plugins)

    banking_service = providers.Coroutine(_plugin_service, injector, "banking_service")
    notification_service = providers.Coroutine(_plugin_service, injector,
                                               "notification_service")
    report_service = providers.Coroutine(_plugin_service, injector, "report_service")

    def __new__(cls, *args: object, **kwargs: object) -> ApplicationContainer:
        container = super().__new__(cls, *args, **kwargs)
        # Awaitable, overridden or not (also when a test overrides it with a plain object).
        container.shared.queue_service.enable_async_mode()
        # Plugin queues are known before the queue service validates the first job.
        container.shared.registry.override(
            providers.Singleton(plugin_registry, plugins=container.plugins))
        return container

    #: The declared job schedulers (``schedules:`` and the plugins'), upserted on start.
    declared_schedules = providers.Resource(
        schedules_resource, queue_service=shared.queue_service, plugins=plugins,
        settings=shared.config)

    workers = providers.Resource(
        run_plugin_workers, container=__self__, queue_service=shared.queue_service,
        plugins=plugins, injector=injector,
    )
