"""``ApplicationContainer``: the plugin host, with the shared module and example plugins.

Worker resources take ``queue_service`` as a direct argument, so dependency-injector
shuts them down before the service, and the service before the Redis pools.
"""

from __future__ import annotations

from dependency_injector import containers, providers

from containers.shared import SharedContainer
from queuekit.demo.processors import process_bank_sync, process_notification, process_report
from queuekit.demo.services import BankingService, NotificationService, ReportService
from queuekit.lifecycle import run_worker
from queuekit.queues import QueueName


class ApplicationContainer(containers.DeclarativeContainer):
    """The shared module, application services and the workers of this process."""

    shared = providers.Container(SharedContainer)

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
        return container

    bank_sync_worker = providers.Resource(
        run_worker, queue_service=shared.queue_service, queue=QueueName.BANK_SYNC,
        processor=providers.Object(process_bank_sync),
    )
    notifications_worker = providers.Resource(
        run_worker, queue_service=shared.queue_service, queue=QueueName.NOTIFICATIONS,
        processor=providers.Object(process_notification),
    )
    reports_worker = providers.Resource(
        run_worker, queue_service=shared.queue_service, queue=QueueName.REPORTS,
        processor=providers.Object(process_report),
    )
