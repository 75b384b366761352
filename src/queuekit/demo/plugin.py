"""The demo plugin: processors for ``bank-sync``, ``notifications`` and ``reports``.

Named in the project's ``config.yaml`` (``plugins: [queuekit.demo.plugin]``); the demo
command adds it when a configuration does not.
"""

from __future__ import annotations

from queuekit.demo.processors import (
    BankSyncProcessor,
    DemoBankApi,
    NotificationProcessor,
    ReportProcessor,
)
from queuekit.plugins import Plugin

#: The module path to name in ``plugins:``.
DEMO_PLUGIN = "queuekit.demo.plugin"

plugin = Plugin(
    name="demo",
    processors=[BankSyncProcessor, NotificationProcessor, ReportProcessor],
    services={"bank_api": DemoBankApi},
)
