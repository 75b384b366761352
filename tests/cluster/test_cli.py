"""The ``queuekit`` command line (through the container) on the cluster."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest
import yaml

from queuekit import BankSyncJobData, QueueName, QueueService
from tests.support.cli import cli
from tests.support.redis_cluster import RedisClusterServers


@pytest.fixture(params=["redis"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_stats_and_health_on_the_cluster(
        tmp_path: Path, redis_cluster: RedisClusterServers, key_prefix: str,
        service_factory: Callable[..., Awaitable[QueueService]],
        capsys: pytest.CaptureFixture[str]) -> None:
    service = await service_factory()
    for _ in range(2):
        await service.add_job(QueueName.BANK_SYNC, "sync", BankSyncJobData(
            user_id="u1", account_id="a1", sync_type="full"))
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "redis": {"url": redis_cluster.nodes[2].url, "prefix": key_prefix, "cluster": True},
        "worker": {"enabled": False}}))

    code, out, _ = await cli(capsys, "stats", "--json", "--config", str(config))
    assert code == 0
    assert json.loads(out)[QueueName.BANK_SYNC]["waiting"] == 2
    code, out, _ = await cli(capsys, "health", "--json", "--config", str(config))
    report = json.loads(out)
    assert report["redis"] == "ok" and report["breaker"] == "closed", report
