"""Fixtures of the CLI integration tests: a config file naming the test server and the
sample plugin, and a started Redis service that knows the sample queue."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from queuekit import QueueRegistry, RedisQueueService
from tests.conftest import SettingsFactory
from tests.support.configs import SAMPLE_PLUGIN, write_config
from tests.support.redis_server import RedisServer
from tests.support.sample_plugin import SAMPLE_QUEUE, SampleJobData


@pytest.fixture
def config(tmp_path: Path, redis_server: RedisServer, key_prefix: str) -> str:
    return str(write_config(tmp_path / "config.yaml", redis_server.url, key_prefix,
                            [SAMPLE_PLUGIN]))


@pytest.fixture
async def qs(make_settings: SettingsFactory) -> AsyncIterator[RedisQueueService]:
    registry = QueueRegistry()
    registry.register(SAMPLE_QUEUE, SampleJobData)
    service = await RedisQueueService.connect(make_settings(), registry)
    yield service
    await service.close()
