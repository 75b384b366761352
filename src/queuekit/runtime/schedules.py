"""Declared job schedulers: the configuration's ``schedules:`` and the plugins', upserted
when a host starts.

Upserting is idempotent across processes (BullMQ's ``addJobScheduler`` script is atomic
and replaces the pending run), so a rolling deploy of many hosts ends with one scheduler
and one pending run per id. A scheduler that an earlier start declared and the
configuration no longer has is removed at the next start (see
:meth:`QueueService.sync_declared_schedules`).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from queuekit.runtime.plugins import PluginSet
from queuekit.schedules import JobSchedulerInfo
from queuekit.service import QueueService
from queuekit.settings import QueuekitSettings

log = logging.getLogger("queuekit.schedules")


async def declare_schedules(service: QueueService, plugins: PluginSet,
                            settings: QueuekitSettings | None = None) -> list[JobSchedulerInfo]:
    """Upsert the declared schedulers of ``plugins`` and ``settings`` (default: the
    service's); prune the ones no longer declared."""
    plugins.register_queues(service.registry)  # plugin queues validate their templates
    declared = plugins.schedules(settings if settings is not None else service.settings)
    infos = await service.sync_declared_schedules(declared)
    if infos:
        log.info("%d declared job scheduler(s) in place", len(infos))
    return infos


async def schedules_resource(queue_service: QueueService, plugins: PluginSet,
                             settings: QueuekitSettings) -> AsyncIterator[list[JobSchedulerInfo]]:
    """A container resource: the declared schedulers, upserted on init. Nothing is undone
    on shutdown: schedulers outlive the processes that declared them."""
    yield await declare_schedules(queue_service, plugins, settings)
