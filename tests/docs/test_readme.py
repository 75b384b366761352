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
async def test_deduplication_snippet_keeps_one_job_and_the_last_payload() -> None:
    namespace = await run("Deduplication", {})
    qs = namespace["qs"]
    assert namespace["again"].id == namespace["first"].id
    assert namespace["owner"] == namespace["latest"].id
    assert qs.closed


async def test_queue_controls_snippet_throttles_and_completes() -> None:
    namespace = await run("Queue controls", {})
    info = namespace["info"]
    assert info.state == JobState.COMPLETED
    assert info.attempts_made == 1  # the rate-limited start did not count
    assert namespace["throttled"] == [info.id]
    assert (info.processed_at - info.created_at).total_seconds() >= 30  # virtual clock
    assert namespace["removed"] is False
    assert namespace["old_failures"] == []
async def test_flows_snippet_runs_the_parent_after_its_children() -> None:
    namespace = await run("Flows: a parent job after its children", {})
    report, tree = namespace["report"], namespace["tree"]
    assert report.state == JobState.COMPLETED
    assert report.return_value.data == {"transactions": 6}
    assert [child.job.state for child in tree.children] == [JobState.COMPLETED] * 2
    assert namespace["qs"].closed


async def test_timeouts_snippet_times_out_and_cancels() -> None:
    namespace = await run("Timeouts and cancellation", {})
    assert namespace["timed_out"].attempts_made == 2
    assert namespace["cancelled"].attempts_made == 1
    assert namespace["qs"].closed
DASHBOARD = "A dashboard of the queues"
TRACING = "Tracing with OpenTelemetry"


async def test_dashboard_snippet_mounts_in_fastapi(test_redis: str) -> None:
    import httpx

    namespace = await run(DASHBOARD, {})
    app = namespace["app"]
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://testserver") as client:
        overview = await client.get("/admin/queues/")
        assert overview.status_code == 200
        assert 'data-queue="bank-sync"' in overview.text
        assert "<button" not in overview.text  # read-only
        refused = await client.post("/admin/queues/queues/bank-sync/actions/retry")
        assert refused.status_code == 403


def test_tracing_snippet_shows_one_trace() -> None:
    """In a fresh interpreter: a process sets its tracer provider once."""
    import json
    import subprocess

    source = python_blocks(TRACING)[0]
    script = (
        "import ast, asyncio, json, sys\n"
        f"source = {source!r}\n"
        "code = compile(source, 'README', 'exec', flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT)\n"
        "namespace = {}\n"
        "asyncio.run(eval(code, namespace))\n"
        "add, process = namespace['add'], namespace['process']\n"
        "print(json.dumps({'same_trace': add.context.trace_id == process.context.trace_id,\n"
        "                  'child': process.parent.span_id == add.context.span_id,\n"
        "                  'kinds': [add.kind.name, process.kind.name]}))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.splitlines()[-1]) == {
        "same_trace": True, "child": True, "kinds": ["PRODUCER", "CONSUMER"]}
