"""The demo plugin: processors for ``bank-sync``, ``notifications`` and ``reports``, and
the application services that enqueue their jobs.

Named in the project's ``config.yaml`` (``plugins: [queuekit.demo.plugin]``); the demo
command adds it when a configuration does not. The services are built once per host with
the queue service injected (``await host.get("banking_service")``, or the application
container's ``banking_service`` provider).
"""

from __future__ import annotations

from queuekit.demo.processors import (
    BankSyncProcessor,
    DemoBankApi,
    NotificationProcessor,
    ReportProcessor,
)
from queuekit.demo.services import BankingService, NotificationService, ReportService
from queuekit.runtime.plugins import Plugin

#: The module path to name in ``plugins:``.
DEMO_PLUGIN = "queuekit.demo.plugin"

plugin = Plugin(
    name="demo",
    processors=[BankSyncProcessor, NotificationProcessor, ReportProcessor],
    services={
        "bank_api": DemoBankApi,
        "banking_service": BankingService,
        "notification_service": NotificationService,
        "report_service": ReportService,
    },
)
