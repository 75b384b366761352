"""Declared schedules without Redis: settings, plugins, the container resource, pruning."""

from __future__ import annotations

import pytest

from containers import ApplicationContainer, start, stop
from queuekit import ConfigurationError, QueuekitSettings, QueueName
from queuekit.plugins import Plugin, PluginSet
from queuekit.runtime.schedules import declare_schedules
from queuekit.testing import InMemoryQueueService

SYNC = {"userId": "u1", "accountId": "a1", "syncType": "full"}
NIGHTLY = {"queue": "bank-sync", "pattern": "0 3 * * *", "tz": "Europe/Berlin",
           "name": "sync-transactions", "data": SYNC, "options": {"attempts": 5}}


async def test_the_container_upserts_config_and_plugin_schedules_on_start() -> None:
    app = ApplicationContainer()
    app.shared.config.override(QueuekitSettings(
        backend="memory", plugins=[], schedules={"nightly-sync": NIGHTLY}))
    memory = InMemoryQueueService()
    app.shared.queue_service.override(memory)
    app.plugins.override(PluginSet([Plugin(name="reports", schedules={
        "weekly-report": {"queue": "reports", "pattern": "0 6 * * 1",
                          "data": {"userId": "u1", "reportType": "custom",
                                   "startDate": "2027-01-01", "endDate": "2027-01-07"}}})]))
    await start(app)
    try:
        nightly = await memory.get_job_scheduler(QueueName.BANK_SYNC, "nightly-sync")
        assert nightly is not None
        assert (nightly.pattern, nightly.tz, nightly.name) == (
            "0 3 * * *", "Europe/Berlin", "sync-transactions")
        weekly = await memory.get_job_scheduler(QueueName.REPORTS, "weekly-report")
        assert weekly is not None and weekly.pattern == "0 6 * * 1"
    finally:
        await stop(app)
        await memory.close()


async def test_a_bad_declared_schedule_names_its_id_and_writes_nothing() -> None:
    memory = InMemoryQueueService(QueuekitSettings(backend="memory", schedules={
        "good": NIGHTLY, "broken": {**NIGHTLY, "tz": "Nowhere/Land"}}))
    with pytest.raises(ConfigurationError, match=r"schedules\.broken: .*tz"):
        await declare_schedules(memory, PluginSet())
    assert await memory.get_job_schedulers(QueueName.BANK_SYNC) == []
    await memory.close()


async def test_a_schedule_no_longer_declared_is_removed_and_others_stay() -> None:
    memory = InMemoryQueueService()
    settings = QueuekitSettings(backend="memory", schedules={
        "a": NIGHTLY, "b": {**NIGHTLY, "pattern": "0 4 * * *"}})
    await memory.sync_declared_schedules(settings.schedules)
    await memory.upsert_job_scheduler(QueueName.BANK_SYNC, "in-code", every=60_000, data=SYNC)
    await memory.sync_declared_schedules({"a": settings.schedules["a"]})
    ids = {s.id for s in await memory.get_job_schedulers(QueueName.BANK_SYNC)}
    assert ids == {"a", "in-code"}
    assert (await memory.get_job_counts(QueueName.BANK_SYNC))["delayed"] == 1  # a's run only
    await memory.close()


def test_plugin_schedules_are_validated_and_may_not_clash() -> None:
    with pytest.raises(ConfigurationError, match=r"plugin 'p': schedules\.x"):
        Plugin(name="p", schedules={"x": {"queue": "bank-sync", "every": -5}})
    one = Plugin(name="one", schedules={"x": NIGHTLY})
    two = Plugin(name="two", schedules={"x": NIGHTLY})
    with pytest.raises(ConfigurationError, match="declared by plugins 'one' and 'two'"):
        PluginSet([one, two]).schedules(QueuekitSettings())
    # The configuration may redefine a plugin's schedule.
    settings = QueuekitSettings(schedules={"x": {**NIGHTLY, "pattern": "0 5 * * *"}})
    assert PluginSet([one]).schedules(settings)["x"].pattern == "0 5 * * *"
