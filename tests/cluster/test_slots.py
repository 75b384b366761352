"""Where a queue's keys live on the cluster: one slot per queue, spread or shared."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from redis.crc import key_slot

from queuekit import (
    BankSyncJobData,
    JobContext,
    JobResult,
    NotificationJobData,
    QueueName,
    QueueService,
    RedisQueueService,
)
from queuekit.errors import QueueUnavailableError
from tests.conftest import SettingsFactory
from tests.support.redis_cluster import RedisClusterServers
from tests.support.redis_server import free_port

BANK, NOTE = QueueName.BANK_SYNC, QueueName.NOTIFICATIONS
SYNC = BankSyncJobData(user_id="u1", account_id="a1", sync_type="incremental")
NOTICE = NotificationJobData(user_id="u1", type="email", template_id="welcome", data={})


def _keys(cluster: RedisClusterServers, prefix: str) -> list[str]:
    client = cluster.client()
    try:
        # Every key queuekit and BullMQ wrote for this test starts with "{<prefix>".
        return list(client.scan_iter(match=f"{{{prefix}*", count=1000,
                                     target_nodes=client.PRIMARIES))
    finally:
        client.close()


async def _run_jobs(service: QueueService) -> None:
    async def done(job: JobContext[Any]) -> JobResult:
        await job.update_progress(50)
        return JobResult(success=True)

    for queue, payload in ((BANK, SYNC), (NOTE, NOTICE)):
        service.create_worker(queue, done)
        job = await service.add_job(queue, "work", payload)
        delayed = await service.add_job(queue, "later", payload, options={"delay": 50})
        for job_id in (job.id, delayed.id):
            info = await service.wait_for_job(queue, job_id, timeout=10)
            assert info.state == "completed"


def _slots_by_queue(keys: list[str]) -> dict[str, set[int]]:
    by_queue: dict[str, set[int]] = {}
    for key in keys:
        queue = key.split("}:", 1)[1].split(":", 1)[0]
        by_queue.setdefault(queue, set()).add(key_slot(key.encode()))
    return by_queue


@pytest.fixture(params=["redis"])  # one engine is enough: the keys are BullMQ's
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_each_queue_has_its_own_slot(
        redis_cluster: RedisClusterServers, key_prefix: str,
        service_factory: Callable[..., Awaitable[QueueService]]) -> None:
    service = await service_factory()
    await _run_jobs(service)

    by_queue = _slots_by_queue(_keys(redis_cluster, key_prefix))
    assert set(by_queue) == {BANK, NOTE}
    assert by_queue[BANK] == {key_slot(f"{key_prefix}:{BANK}".encode())}
    assert by_queue[NOTE] == {key_slot(f"{key_prefix}:{NOTE}".encode())}
    assert by_queue[BANK] != by_queue[NOTE]


async def test_shared_slot_puts_every_queue_in_one_slot(
        redis_cluster: RedisClusterServers, key_prefix: str,
        service_factory: Callable[..., Awaitable[QueueService]]) -> None:
    service = await service_factory(redis={"cluster_slots": "shared"})
    await _run_jobs(service)

    keys = _keys(redis_cluster, key_prefix)
    assert keys and all(k.startswith(f"{{{key_prefix}}}:") for k in keys)
    assert {key_slot(k.encode()) for k in keys} == {key_slot(key_prefix.encode())}


def _prefix_on_two_shards(cluster: RedisClusterServers) -> str:
    # Pick a prefix whose two queue tags hash to slots of different masters, so the test
    # shows the spreading rather than depending on luck (1 in 3 otherwise).
    client = cluster.client()
    try:
        while True:
            prefix = f"qk-spread-{uuid.uuid4().hex[:8]}"
            nodes = {client.get_node_from_key(f"{{{prefix}:{q}}}").name  # type: ignore[no-untyped-call]
                     for q in (BANK, NOTE)}
            if len(nodes) == 2:
                return prefix
    finally:
        client.close()


async def test_two_queues_land_on_different_shards(
        redis_cluster: RedisClusterServers,
        service_factory: Callable[..., Awaitable[QueueService]]) -> None:
    prefix = _prefix_on_two_shards(redis_cluster)
    service = await service_factory(redis={"prefix": prefix})
    await _run_jobs(service)

    holders: dict[str, set[int]] = {}
    for master in redis_cluster.nodes:
        client = master.client()
        try:
            role = client.role()[0]
            if role != "master":
                continue
            for key in client.scan_iter(match=f"{{{prefix}:*", count=1000):
                queue = key.split("}:", 1)[1].split(":", 1)[0]
                holders.setdefault(queue, set()).add(master.port)
        finally:
            client.close()
    assert set(holders) == {BANK, NOTE}
    assert len(holders[BANK]) == len(holders[NOTE]) == 1
    assert holders[BANK] != holders[NOTE]


async def test_stored_queues_are_found_on_every_shard(
        redis_cluster: RedisClusterServers,
        service_factory: Callable[..., Awaitable[QueueService]]) -> None:
    prefix = _prefix_on_two_shards(redis_cluster)
    service = await service_factory(redis={"prefix": prefix})
    await _run_jobs(service)
    assert isinstance(service, RedisQueueService)
    assert await service._stored_queues() == {BANK, NOTE}


async def test_seed_nodes_reach_the_cluster_when_the_url_node_is_down(
        redis_cluster: RedisClusterServers, make_settings: SettingsFactory) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    live = [f"127.0.0.1:{node.port}" for node in redis_cluster.nodes[1:3]]
    service = await RedisQueueService.connect(make_settings(
        redis={"url": dead, "cluster_nodes": live}))
    try:
        job = await service.add_job(BANK, "seeded", SYNC)
        info = await service.get_job(BANK, job.id)
        assert info is not None and info.state == "waiting"
    finally:
        await service.close()


async def test_unreachable_cluster_fails_fast_naming_the_url(
        make_settings: SettingsFactory) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"
    with pytest.raises(QueueUnavailableError, match=r"cannot connect to Redis at redis://127\.0\.0\.1"):
        await RedisQueueService.connect(make_settings(
            redis={"url": dead, "startup_timeout": 2.0, "cluster_failover_wait": 0}))


async def test_health_reports_the_cluster(
        service_factory: Callable[..., Awaitable[QueueService]]) -> None:
    service = await service_factory()
    report = await service.health()
    assert report.ok and report.redis == "ok" and report.breaker == "closed", report
