"""Plugins: found by configuration and by entry point, checked for clashes, their
processors built with dependencies injected from the container (in memory, no Redis)."""

from __future__ import annotations

import importlib
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from containers import ApplicationContainer, resolve, start, stop
from containers.plugins import Injector, build_processors
from queuekit import (
    BankSyncJobData,
    ConfigurationError,
    JobContext,
    JobPayload,
    JobResult,
    JobState,
    QueuekitSettings,
    QueueName,
    QueueRegistry,
    QueueService,
    UnknownQueueError,
)
from queuekit.demo.services import NotificationService
from queuekit.plugins import (
    ENTRY_POINT_GROUP,
    Plugin,
    PluginSet,
    effective_concurrency,
    import_plugin,
    load_plugins,
    plugin_registry,
)
from queuekit.processors import FunctionProcessor, WorkerHost, processor
from queuekit.runtime.runner import worker_resource as run_worker
from queuekit.testing import InMemoryQueueService
from tests.support.configs import SAMPLE_PLUGIN
from tests.support.sample_plugin import SAMPLE_QUEUE, SampleJobData
from tests.support.sample_plugin import plugin as sample_plugin


def memory_settings(**overrides: Any) -> QueuekitSettings:
    return QueuekitSettings(backend="memory", **overrides)


async def noop(job: JobContext[Any]) -> None:
    return None


# -- finding plugins -------------------------------------------------------------------

@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A directory on sys.path for modules and dist-info written by a test."""
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(sys.modules)
    yield tmp_path
    for name in set(sys.modules) - before:
        if name.startswith("qk_ep_"):
            del sys.modules[name]
    importlib.invalidate_caches()


def install(site: Path, dist: str, entry_points: dict[str, str]) -> None:
    """Make importlib.metadata see a distribution declaring ``entry_points``."""
    info = site / f"{dist}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    lines = "\n".join(f"{name} = {value}" for name, value in entry_points.items())
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{lines}\n")
    importlib.invalidate_caches()


def test_plugins_come_from_config_and_entry_points(site: Path) -> None:
    (site / "qk_ep_plugin.py").write_text(textwrap.dedent("""
        from queuekit.plugins import Plugin
        from queuekit.processors import FunctionProcessor

        async def handle(job):
            return None

        plugin = Plugin(name="installed", processors=[FunctionProcessor("analytics", handle)])
        other = Plugin(name="other")
    """))
    install(site, "qk-ep-dist", {"installed": "qk_ep_plugin", "sample": SAMPLE_PLUGIN})
    loaded = load_plugins(memory_settings(plugins=[SAMPLE_PLUGIN, "qk_ep_plugin:other"]))
    # The sample plugin is named in both places and loaded once.
    assert loaded.names == ["sample", "other", "installed"]
    assert loaded.processor_queues() == ["analytics", SAMPLE_QUEUE]
    assert load_plugins(memory_settings(plugins=[]), entry_points=False).names == []


def test_a_broken_entry_point_is_reported(site: Path) -> None:
    install(site, "qk-ep-broken", {"broken": "qk_ep_missing_module"})
    with pytest.raises(ConfigurationError, match=r"entry point 'broken'.*cannot be imported"):
        load_plugins(memory_settings(plugins=[]))


def test_plugin_references_are_checked() -> None:
    assert import_plugin(f"{SAMPLE_PLUGIN}:plugin") is sample_plugin
    with pytest.raises(ConfigurationError, match="not a queuekit plugin"):
        import_plugin(f"{SAMPLE_PLUGIN}:SAMPLE_QUEUE")
    with pytest.raises(ConfigurationError, match="cannot be imported"):
        import_plugin("qk_no_such_module")


def test_clashes_are_refused_with_both_names() -> None:
    one = Plugin("one", [FunctionProcessor("reports", noop)], services={"clock": object})
    with pytest.raises(ConfigurationError, match="'reports' has processors in plugins 'one' "
                                                 "and 'two'"):
        PluginSet([one, Plugin("two", [FunctionProcessor("reports", noop)])])
    with pytest.raises(ConfigurationError, match="two different plugins are named 'one'"):
        PluginSet([one, Plugin("one")])
    with pytest.raises(ConfigurationError, match="service 'clock' is provided by plugins"):
        PluginSet([one, Plugin("three", services={"clock": object})])
    with pytest.raises(ConfigurationError, match="non-empty name"):
        Plugin(" ")
    with pytest.raises(ConfigurationError, match="is not a processor"):
        Plugin("bad", [noop])  # type: ignore[list-item]

    class Other(JobPayload):
        n: int

    with pytest.raises(ConfigurationError, match=r"plugin 'taker'.*already takes"):
        plugin_registry(PluginSet([Plugin("taker", queues={"reports": Other})]))
    assert repr(PluginSet([one])) == "PluginSet(['one'])"
    assert len(PluginSet([one, one])) == 1


def test_concurrency_precedence() -> None:
    settings = memory_settings(worker={"concurrency": 4, "queue_concurrency": {"reports": 2}})
    assert effective_concurrency(settings, "reports", 7, override=9) == 9
    assert effective_concurrency(settings, "reports", 7) == 2      # configuration wins
    assert effective_concurrency(settings, "analytics", 7) == 7    # then the processor
    assert effective_concurrency(settings, "analytics", None) == 4  # then the default


# -- the container ---------------------------------------------------------------------

async def test_plugin_processors_run_in_the_container_with_injected_dependencies() -> None:
    app = ApplicationContainer()
    app.shared.config.override(memory_settings(plugins=[SAMPLE_PLUGIN]))
    await start(app)
    try:
        qs: QueueService = await resolve(app.shared.queue_service)
        assert SAMPLE_QUEUE in qs.registry
        workers = await resolve(app.workers)
        assert set(workers) == {SAMPLE_QUEUE}
        assert workers[SAMPLE_QUEUE].concurrency == 2  # declared by @processor
        job = await qs.add_job(SAMPLE_QUEUE, "multiply", SampleJobData(user_id="u",
                                                                        number=21))
        info = await qs.wait_for_job(SAMPLE_QUEUE, job.id, timeout=5)
        assert info.return_value == JobResult(success=True, data={"product": 42,
                                                                   "prefix": "queue"})
    finally:
        await stop(app)
    assert not workers[SAMPLE_QUEUE].running


async def test_an_api_process_enqueues_plugin_jobs_without_workers() -> None:
    app = ApplicationContainer()
    app.shared.config.override(memory_settings(plugins=[SAMPLE_PLUGIN],
                                               worker={"enabled": False}))
    await start(app)
    try:
        qs: QueueService = await resolve(app.shared.queue_service)
        assert await resolve(app.workers) == {}
        job = await qs.add_job(SAMPLE_QUEUE, "multiply", {"userId": "u", "number": 1})
        assert job.state == JobState.WAITING
        assert qs.workers == {}
    finally:
        await stop(app)


async def test_overridden_queue_service_gets_the_plugin_queues() -> None:
    app = ApplicationContainer()
    app.shared.config.override(memory_settings(plugins=[SAMPLE_PLUGIN]))
    memory = InMemoryQueueService()
    app.shared.queue_service.override(memory)
    await start(app)
    try:
        job = await memory.add_job(SAMPLE_QUEUE, "multiply", {"userId": "u", "number": 2})
        info = await memory.wait_for_job(SAMPLE_QUEUE, job.id, timeout=5)
        assert info.return_value.data["product"] == 4
    finally:
        await stop(app)
        await memory.close()


async def test_constructor_parameters_are_resolved_by_name() -> None:
    class Clock:
        def __init__(self, settings: QueuekitSettings, queue_service: QueueService) -> None:
            self.settings, self.queue_service = settings, queue_service

    class Greeter:
        def __init__(self, clock: Clock, greeting: str = "hello") -> None:
            self.clock, self.greeting = clock, greeting

    @processor(QueueName.NOTIFICATIONS)
    class Greeting(WorkerHost[Any]):
        def __init__(self, greeter: Greeter, notification_service: NotificationService,
                     registry: QueueRegistry, clock: Clock) -> None:
            self.greeter = greeter
            self.clock = clock
            self.notifications = notification_service
            self.registry = registry

        async def process(self, job: JobContext[Any]) -> None:
            return None

    # The application's services are plugin services too (the demo's, here without its
    # processors, which would clash with Greeting on the notifications queue).
    plugins = PluginSet([Plugin("greet", [Greeting], services={"clock": Clock,
                                                                "greeter": Greeter}),
                         Plugin("app", services={"notification_service": NotificationService})])
    app = ApplicationContainer()
    settings = memory_settings(plugins=[])
    app.shared.config.override(settings)
    app.plugins.override(plugins)
    await start(app)
    try:
        workers = await resolve(app.workers)
        built = workers[QueueName.NOTIFICATIONS].processor.host  # type: ignore[attr-defined]
        assert isinstance(built, Greeting)
        qs = await resolve(app.shared.queue_service)
        assert built.greeter.greeting == "hello"  # the default was kept
        assert built.greeter.clock.settings is settings
        assert built.greeter.clock.queue_service is qs
        assert built.clock is built.greeter.clock  # one instance per host
        assert isinstance(built.notifications, NotificationService)
        assert built.registry is qs.registry

        class Needy(WorkerHost[BankSyncJobData]):
            queue = "reports"

            def __init__(self, mailer: object) -> None:
                self.mailer = mailer

            async def process(self, job: JobContext[BankSyncJobData]) -> None:
                return None

        with pytest.raises(ConfigurationError,
                           match=r"processor .*Needy of plugin 'needy' takes 'mailer'.*"
                                 r"available: .*banking_service.*queue_service.*settings"):
            await build_processors(app, PluginSet([Plugin("needy", [Needy])]))

        class Egg:
            def __init__(self, hen: object) -> None: ...

        class Hen:
            def __init__(self, egg: object) -> None: ...

        cyclic = Injector(app, PluginSet([Plugin("farm", services={"egg": Egg, "hen": Hen})]))
        with pytest.raises(ConfigurationError, match="cycle: egg -> hen -> egg"):
            await cyclic.get("egg", "test")
        assert await Injector(app, plugins).get("nothing", "test") == (False, None)
    finally:
        await stop(app)


async def test_run_worker_resource_for_hosts_without_plugins() -> None:
    async def handle(job: JobContext[Any]) -> None:
        return None

    qs = InMemoryQueueService(memory_settings(worker={"queues": ["reports"]}))
    disabled = run_worker(qs, QueueName.BANK_SYNC, handle)
    assert await anext(disabled) is None
    with pytest.raises(StopAsyncIteration):
        await anext(disabled)
    enabled = run_worker(qs, QueueName.REPORTS, handle, concurrency=2)
    worker = await anext(enabled)
    assert worker is not None and worker.running and worker.concurrency == 2
    with pytest.raises(StopAsyncIteration):
        await anext(enabled)
    assert not worker.running
    await qs.close()


async def test_function_processors_and_registry_errors() -> None:
    seen: list[str] = []

    async def handle(job: JobContext[BankSyncJobData]) -> JobResult:
        seen.append(job.data.account_id)
        return JobResult(success=True)

    app = ApplicationContainer()
    app.shared.config.override(memory_settings(plugins=[], worker={"queues": ["bank-sync"]}))
    app.plugins.override(PluginSet([Plugin("fn", [FunctionProcessor(QueueName.BANK_SYNC,
                                                                     handle, 1)])]))
    await start(app)
    try:
        qs = await resolve(app.shared.queue_service)
        job = await qs.add_job(QueueName.BANK_SYNC, "sync",
                               {"userId": "u", "accountId": "a9", "syncType": "full"})
        await qs.wait_for_job(QueueName.BANK_SYNC, job.id, timeout=5)
        assert seen == ["a9"]
        with pytest.raises(UnknownQueueError):
            await qs.add_job(SAMPLE_QUEUE, "x", {"userId": "u", "number": 1})
    finally:
        await stop(app)
