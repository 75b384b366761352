"""The composition root: overrides, resources and per-test isolation, without Redis."""

from __future__ import annotations

import datetime as dt

import pytest

from containers import ApplicationContainer, SharedContainer, resolve, start, stop
from queuekit import JobState, QueuekitSettings, QueueName, RedisQueueService
from queuekit.demo.services import BankingService
from queuekit.testing import InMemoryQueueService
from tests.support.redis_server import free_port


def unreachable_settings() -> QueuekitSettings:
    """Redis on a port nothing listens on: any connection attempt would fail."""
    return QueuekitSettings(redis={"url": f"redis://127.0.0.1:{free_port()}/0"})


async def test_overriding_queue_service_runs_the_application_without_redis() -> None:
    app = ApplicationContainer()
    app.shared.config.override(unreachable_settings())
    memory = InMemoryQueueService()
    app.shared.queue_service.override(memory)
    await start(app)
    try:
        banking = await resolve(app.banking_service)
        assert isinstance(banking, BankingService)
        assert banking.queue_service is memory
        job = await banking.sync_bank_account("u1", "acc-1", full=True)
        info = await memory.wait_for_job(QueueName.BANK_SYNC, job.id, timeout=5)
        assert info.state == JobState.COMPLETED
        assert info.progress == 100
        reports = await resolve(app.report_service)
        report = await reports.request_report("u1", "custom", dt.date(2026, 1, 1),
                                              dt.date(2026, 1, 31))
        info = await memory.wait_for_job(QueueName.REPORTS, report.id, timeout=5)
        assert info.return_value.data == {"days": 31}
    finally:
        await stop(app)
    assert not memory.workers[QueueName.BANK_SYNC].running
    await memory.close()


async def test_each_container_has_its_own_singletons() -> None:
    first, second = SharedContainer(), SharedContainer()
    for c in (first, second):
        c.config.override(QueuekitSettings(backend="memory"))
    await start(first)
    await start(second)
    try:
        a = await resolve(first.queue_service)
        b = await resolve(second.queue_service)
        assert a is not b
        assert a is await resolve(first.queue_service)
        assert isinstance(a, InMemoryQueueService)
        assert first.registry() is not second.registry()
    finally:
        await stop(first)
        await stop(second)
    assert a.closed and b.closed


async def test_memory_backend_from_settings_and_reset() -> None:
    container = SharedContainer()
    container.config.override(QueuekitSettings(backend="memory"))
    await start(container)
    qs = await resolve(container.queue_service)
    await qs.add_job(QueueName.ANALYTICS, "event", {"userId": "u1", "event": "login"})
    assert (await qs.get_job_counts(QueueName.ANALYTICS))["waiting"] == 1
    await stop(container)
    container.reset_singletons()
    await start(container)
    fresh = await resolve(container.queue_service)
    assert fresh is not qs
    assert (await fresh.get_job_counts(QueueName.ANALYTICS))["waiting"] == 0
    await stop(container)


async def test_workers_can_be_disabled_for_an_api_process() -> None:
    app = ApplicationContainer()
    app.shared.config.override(QueuekitSettings(
        backend="memory", worker={"queues": ["notifications"]}))
    await start(app)
    try:
        qs = await resolve(app.shared.queue_service)
        assert set(qs.workers) == {QueueName.NOTIFICATIONS}
    finally:
        await stop(app)
    app.shared.config.override(QueuekitSettings(backend="memory", worker={"enabled": False}))
    app.shared.reset_singletons()
    await start(app)
    try:
        qs = await resolve(app.shared.queue_service)
        assert qs.workers == {}
    finally:
        await stop(app)


async def test_container_resources_without_override_need_redis() -> None:
    container = SharedContainer()
    container.config.override(unreachable_settings())
    with pytest.raises(Exception, match="cannot connect"):
        await start(container)
    await stop(container)


def test_redis_service_constructs_without_connecting() -> None:
    qs = RedisQueueService(unreachable_settings())
    assert qs.prefix == "queue"
    assert qs.connection.server is None
