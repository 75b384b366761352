"""``ApplicationContainer``: the plugin host, with the shared module and example plugins.

``plugins`` are the modules named in the configuration (``plugins:``) and those installed
under the ``queuekit.plugins`` entry-point group; their queues are registered in
``shared.registry`` and their processors run in ``workers``, one worker per queue that
``worker.enabled`` / ``worker.queues`` allow in this process. The demo's processors are
such a plugin (``queuekit.demo.plugin``, named in ``config.yaml``).

The worker resource takes ``queue_service`` as a direct argument, so dependency-injector
shuts it down before the service, and the service before the Redis pools.
"""

from __future__ import annotations

from dependency_injector import containers, providers

from containers.plugins import run_plugin_workers
from containers.shared import SharedContainer
from queuekit.demo.services import BankingService, NotificationService, ReportService
from queuekit.plugins import load_plugins, plugin_registry


class ApplicationContainer(containers.DeclarativeContainer):
    """The shared module, application services and the workers of this process."""

    __self__ = providers.Self()
    shared = providers.Container(SharedContainer)
    plugins = providers.Singleton(load_plugins, settings=shared.config)

    banking_service = providers.Factory(BankingService, queue_service=shared.queue_service)
    notification_service = providers.Factory(NotificationService,
                                              queue_service=shared.queue_service)
    report_service = providers.Factory(ReportService, queue_service=shared.queue_service)

    def __new__(cls, *args: object, **kwargs: object) -> ApplicationContainer:
        container = super().__new__(cls, *args, **kwargs)
        # Services that depend on the (async) queue service are awaited, overridden or not.
        for service in (container.banking_service, container.notification_service,
                        container.report_service, container.shared.queue_service):
            service.enable_async_mode()
        # Plugin queues are known before the queue service validates the first job.
        container.shared.registry.override(
            providers.Singleton(plugin_registry, plugins=container.plugins))
        return container

    workers = providers.Resource(
        run_plugin_workers, container=__self__, queue_service=shared.queue_service,
        plugins=plugins,
    )
