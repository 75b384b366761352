"""Fixtures of the Node interop tests: Node BullMQ installed once, Node scripts per test.

The session fixture installs Node BullMQ with ``npm ci`` when it is missing, so ``make test``
on a fresh machine needs only ``node`` and ``npm`` on PATH. Without them these tests fail
(they are never skipped): interop with the NestJS side is part of queuekit's contract.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from queuekit import RedisQueueService
from tests.conftest import SettingsFactory
from tests.interop.node_bullmq import NodeBullMQ, NodeRunner, NodeSetupError, ensure_node_bullmq
from tests.support.redis_server import RedisServer


@pytest.fixture(params=["fast", "bullmq"])
async def qs(request: pytest.FixtureRequest,
             make_settings: SettingsFactory) -> AsyncIterator[RedisQueueService]:
    """A queuekit service whose workers use the parametrised engine."""
    service = await RedisQueueService.connect(make_settings(worker={"engine": request.param}))
    yield service
    await service.close()


@pytest.fixture(scope="session")
def node_bullmq() -> NodeBullMQ:
    try:
        return ensure_node_bullmq()
    except NodeSetupError as exc:
        problem = str(exc)
    pytest.fail(f"Node interop tests cannot run: {problem}", pytrace=False)


@pytest.fixture
async def node(node_bullmq: NodeBullMQ, redis_server: RedisServer) -> AsyncIterator[NodeRunner]:
    """Runs this folder's Node scripts against the test redis-server; stops them after."""
    runner = NodeRunner(node_bullmq, redis_server.port)
    yield runner
    await runner.stop_all()
