"""Fixtures for the Redis Cluster tests: one private 6-node loopback cluster per session.

``backend`` and ``make_settings`` are overridden here, so the behaviour tests imported by
``test_behaviour.py`` run unchanged against the cluster with ``redis.cluster: true``
(both worker engines).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from queuekit import QueuekitSettings, load_settings
from tests.conftest import SettingsFactory
from tests.interop.conftest import node_bullmq  # noqa: F401 - Node BullMQ, installed once
from tests.support.redis_cluster import RedisClusterServers


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisClusterServers]:
    cluster = RedisClusterServers()
    try:
        cluster.start()
    except RuntimeError as exc:
        cluster.cleanup()
        pytest.fail(f"cannot start the test Redis Cluster: {exc}", pytrace=False)
    yield cluster
    cluster.cleanup()


@pytest.fixture(params=["redis-cluster", "redis-cluster-bullmq"])
def backend(request: pytest.FixtureRequest) -> str:
    # The names the root service_factory knows: "redis-bullmq" selects bullmq's Worker.
    return "redis-bullmq" if request.param.endswith("bullmq") else "redis"


@pytest.fixture
def make_settings(redis_cluster: RedisClusterServers, key_prefix: str) -> SettingsFactory:
    """Cluster settings with this test's prefix (a slot per queue unless overridden)."""

    def factory(**overrides: Any) -> QueuekitSettings:
        redis = {"url": redis_cluster.url, "prefix": key_prefix, "cluster": True,
                 **overrides.pop("redis", {})}
        worker = {"drain_delay": 5.0, **overrides.pop("worker", {})}
        return load_settings(redis=redis, worker=worker, **overrides)

    return factory
