"""The README's user sections run: each fenced ``python`` block under these headings is
executed (top-level ``await`` allowed), so the documentation cannot rot."""

from __future__ import annotations

import ast
import importlib.util
import inspect
import re
import sys
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from queuekit import JobState, QueueName, QueueService, load_settings
from queuekit.plugins import Plugin
from tests.support.redis_server import RedisServer, free_port

README = Path(__file__).resolve().parents[2] / "README.md"
PLUGIN = "Writing a plugin"
API_PROCESS = "Running workers next to an API process"
LIFESPAN = "Wiring the container into a FastAPI (or any asyncio) app's lifespan"
TESTING = "Testing application code with InMemoryQueueService"


def python_blocks(heading: str) -> list[str]:
    """The ```python blocks of the ``## heading`` section (at least one)."""
    text = README.read_text()
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"README has no section {heading!r}"
    blocks = re.findall(r"^```python\n(.*?)^```", match.group(1), re.M | re.S)
    assert blocks, f"section {heading!r} has no python snippet"
    return blocks


async def run(heading: str, namespace: dict[str, Any]) -> dict[str, Any]:
    for index, source in enumerate(python_blocks(heading)):
        code = compile(source, f"README.md ({heading}, block {index + 1})", "exec",
                       flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)
        result = eval(code, namespace)
        if inspect.iscoroutine(result):
            await result
    return namespace


@pytest.fixture
def test_redis(monkeypatch: pytest.MonkeyPatch, redis_server: RedisServer,
               key_prefix: str) -> str:
    """Snippets that read the configuration from the environment use the test server."""
    monkeypatch.setenv("QUEUEKIT_REDIS__URL", redis_server.url)
    monkeypatch.setenv("QUEUEKIT_REDIS__PREFIX", key_prefix)
    monkeypatch.delenv("QUEUEKIT_CONFIG", raising=False)
    return key_prefix


async def test_plugin_snippet_runs_in_the_container(monkeypatch: pytest.MonkeyPatch) -> None:
    from containers import ApplicationContainer, resolve, start, stop

    module = types.ModuleType("readme_greetings")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    await run(PLUGIN, module.__dict__)
    assert isinstance(module.plugin, Plugin)

    app = ApplicationContainer()
    app.shared.config.override(load_settings(backend="memory", plugins=[module.__name__]))
    await start(app)
    try:
        qs: QueueService = await resolve(app.shared.queue_service)
        job = await qs.add_job("greetings", "greet", {"userId": "u1", "name": "Ada"})
        info = await qs.wait_for_job("greetings", job.id, timeout=5)
        assert qs.workers["greetings"].concurrency == 2
    finally:
        await stop(app)
    assert info.return_value.message == "Hello Ada, from queuekit (queue)"
    assert info.progress == 50


async def test_api_process_snippet_enqueues_without_a_worker(test_redis: str) -> None:
    namespace = await run(API_PROCESS, {})
    assert namespace["job"].state == JobState.WAITING
    assert namespace["waiting"] == 1
    assert namespace["qs"].workers == {}
    assert namespace["qs"].closed


class _FastAPIStub:
    """Just what the snippet uses of FastAPI, when FastAPI is not installed."""

    def __init__(self, lifespan: Callable[..., Any]) -> None:
        self.router = types.SimpleNamespace(lifespan_context=lifespan)
        self.state = types.SimpleNamespace()

    def post(self, path: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        return lambda route: route


async def test_lifespan_snippet_starts_and_stops_the_container(
    test_redis: str, monkeypatch: pytest.MonkeyPatch,
) -> None:
    if importlib.util.find_spec("fastapi") is None:  # FastAPI is not a dependency
        stub = types.ModuleType("fastapi")
        stub.FastAPI = _FastAPIStub  # type: ignore[attr-defined]
        stub.Request = object  # type: ignore[attr-defined]
        monkeypatch.setitem(sys.modules, "fastapi", stub)
    namespace = await run(LIFESPAN, {})
    app, container = namespace["app"], namespace["container"]
    async with app.router.lifespan_context(app):
        request = types.SimpleNamespace(app=app)
        answer = await namespace["sync_account"]("acc-7", request)
        assert answer["state"] == JobState.WAITING
        qs: QueueService = await namespace["resolve"](container.shared.queue_service)
        info = await qs.wait_for_job(QueueName.BANK_SYNC, answer["job_id"], timeout=10)
        assert info.state == JobState.COMPLETED  # this process runs the demo plugin's worker
    assert qs.closed


async def test_testing_snippet_tests_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    # Nothing may connect: a Redis URL where no server listens would make it fail loudly.
    monkeypatch.setenv("QUEUEKIT_REDIS__URL", f"redis://127.0.0.1:{free_port()}/0")
    namespace = await run(TESTING, {})
    tests = [fn for name, fn in namespace.items()
             if name.startswith("test_") and inspect.iscoroutinefunction(fn)]
    assert len(tests) == 2
    for test in tests:
        await test()


async def test_usage_snippet_runs_on_redis(test_redis: str) -> None:
    namespace = await run("Using it", {})
    info = namespace["info"]
    assert info.state == JobState.COMPLETED
    assert info.progress == 50
    assert {"waiting", "active", "completed", "failed"} <= set(namespace["counts"])


async def test_events_snippet_sees_progress_then_completion() -> None:
    from queuekit.events import EventType

    namespace = await run("Events, progress and rate limits", {})
    assert namespace["progress_seen"] == 50
    assert namespace["event"].type == EventType.COMPLETED
    assert namespace["qs"].closed


async def test_schedules_snippet_runs_a_week_in_memory() -> None:
    namespace = await run("Schedules", {})
    assert namespace["nightly"].pattern == "0 3 * * *"
    assert namespace["every_6h"].limit == 10
    assert namespace["qs"].closed


async def test_schedules_yaml_snippet_is_a_valid_declaration() -> None:
    import yaml

    from queuekit.testing import InMemoryQueueService

    text = README.read_text()
    section = re.search(r"^## Schedules\n(.*?)(?=^## )", text, re.M | re.S)
    assert section
    [block] = re.findall(r"^```yaml\n(.*?)^```", section.group(1), re.M | re.S)
    settings = load_settings(backend="memory", **yaml.safe_load(block))
    qs = InMemoryQueueService(settings)
    [info] = await qs.sync_declared_schedules(settings.schedules)
    assert (info.id, info.tz, info.name) == ("nightly-sync", "Europe/Berlin",
                                             "sync-transactions")
    await qs.close()
