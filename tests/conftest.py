"""Fixtures for every suite.

A private ``redis-server`` is started once per session on a free loopback port; each test
gets its own key prefix, so tests never see each other's keys and nothing is flushed.
If Redis cannot be started the run fails: an integration test is never skipped.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import pytest

from queuekit import QueuekitSettings, QueueService, RedisQueueService, load_settings
from queuekit.testing import InMemoryQueueService
from tests.support.redis_server import RedisServer

SettingsFactory = Callable[..., QueuekitSettings]


@pytest.fixture(scope="session")
def redis_server() -> Iterator[RedisServer]:
    server = RedisServer()
    try:
        server.start()
    except RuntimeError as exc:
        pytest.fail(f"cannot start the test redis-server: {exc}", pytrace=False)
    yield server
    server.cleanup()


@pytest.fixture
def key_prefix() -> str:
    return f"qk-test-{uuid.uuid4().hex[:10]}"


@pytest.fixture
def make_settings(redis_server: RedisServer, key_prefix: str) -> SettingsFactory:
    """Settings pointing at the test server, with this test's prefix; overrides as kwargs."""

    def factory(**overrides: Any) -> QueuekitSettings:
        redis = {"url": redis_server.url, "prefix": key_prefix, **overrides.pop("redis", {})}
        worker = {"drain_delay": 5.0, **overrides.pop("worker", {})}
        return load_settings(redis=redis, worker=worker, **overrides)

    return factory


@pytest.fixture(params=["memory", "redis", "redis-bullmq"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def service_factory(
    backend: str, request: pytest.FixtureRequest
) -> AsyncIterator[Callable[..., Awaitable[QueueService]]]:
    """Builds started QueueServices of the parametrised backend; closes them at the end."""
    made: list[QueueService] = []

    async def build(**overrides: Any) -> QueueService:
        service: QueueService
        if backend == "memory":
            service = InMemoryQueueService(load_settings(backend="memory", **overrides))
        else:
            factory: SettingsFactory = request.getfixturevalue("make_settings")
            if backend == "redis-bullmq":  # the bullmq package's Worker instead of ours
                overrides["worker"] = {"engine": "bullmq", **overrides.get("worker", {})}
            service = await RedisQueueService.connect(factory(**overrides))
        made.append(service)
        return service

    yield build
    for service in made:
        await service.close()


@pytest.fixture
async def service(service_factory: Callable[..., Awaitable[QueueService]]) -> QueueService:
    return await service_factory()
