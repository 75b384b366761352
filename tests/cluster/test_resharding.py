"""A queue's slot moved to another master while jobs run: ``ASK`` during the move,
``MOVED`` after it; producers and workers follow without losing a job."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from redis.crc import key_slot

from queuekit import BankSyncJobData, JobContext, JobResult, QueueName, QueueService
from queuekit.errors import QueueUnavailableError
from tests.support.redis_cluster import RedisClusterServers
from tests.support.redis_server import RedisServer
from tests.support.waiting import eventually

BANK = QueueName.BANK_SYNC


@pytest.fixture(params=["redis", "redis-bullmq"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def _value(value: int) -> int:
    return value


def _masters(cluster: RedisClusterServers) -> list[RedisServer]:
    masters = []
    for node in cluster.nodes:
        client = node.client()
        try:
            if client.role()[0] == "master":
                masters.append(node)
        finally:
            client.close()
    return masters


def migrate_slot(cluster: RedisClusterServers, slot: int, source: RedisServer,
                 target: RedisServer) -> int:
    """Move ``slot`` with its keys, as ``redis-cli --cluster reshard`` does; keys moved."""
    src, dst = source.client(), target.client()
    moved = 0
    try:
        src_id, dst_id = src.cluster("MYID"), dst.cluster("MYID")
        dst.cluster("SETSLOT", slot, "IMPORTING", src_id)
        src.cluster("SETSLOT", slot, "MIGRATING", dst_id)
        while keys := src.cluster("GETKEYSINSLOT", slot, 50):
            src.migrate("127.0.0.1", target.port, keys, 0, 5000)
            moved += len(keys)
        for master in _masters(cluster):
            client = master.client()
            try:
                client.cluster("SETSLOT", slot, "NODE", dst_id)
            finally:
                client.close()
    finally:
        src.close()
        dst.close()
    return moved


async def test_slot_migration_under_load(
        redis_cluster: RedisClusterServers, key_prefix: str,
        service_factory: Callable[..., Awaitable[QueueService]]) -> None:
    # A job finishing while its slot moves may find its lock gone ("Missing lock" from
    # moveToFinished): it stays active until the stalled check moves it back, as BullMQ
    # does. That check runs each second here (30 s by default, as long as a wait below).
    service = await service_factory(jobs={"remove_on_complete": {"count": 100_000}},
                                    worker={"stalled_interval": 1000, "max_stalled_count": 10})
    tag = f"{{{key_prefix}:{BANK}}}"
    slot = key_slot(tag.encode())
    source = redis_cluster.master_of(tag)
    target = next(m for m in _masters(redis_cluster) if m.port != source.port)
    done: set[str] = set()

    async def work(job: JobContext[Any]) -> JobResult:
        await asyncio.sleep(0.005)
        done.add(job.id)
        return JobResult(success=True)

    payload = BankSyncJobData(user_id="u1", account_id="a1", sync_type="incremental")
    added: list[str] = []
    refused: list[QueueUnavailableError] = []
    stop = asyncio.Event()

    async def produce() -> None:
        while not stop.is_set():
            try:
                job = await service.add_job(BANK, "sync", payload,
                                            options={"job_id": uuid.uuid4().hex})
                added.append(job.id)
            except QueueUnavailableError as exc:
                refused.append(exc)
            await asyncio.sleep(0.005)

    service.create_worker(BANK, work, concurrency=5)
    producers = [asyncio.ensure_future(produce()) for _ in range(3)]
    try:
        await eventually(lambda: _value(len(done)), lambda n: n >= 50, timeout=30)
        moved = await asyncio.to_thread(migrate_slot, redis_cluster, slot, source, target)
        settled = len(added)
        # Adds go on through the slot's new master.
        await eventually(lambda: _value(len(added)), lambda n: n >= settled + 50, timeout=30)
    finally:
        stop.set()
        await asyncio.gather(*producers, return_exceptions=True)

    assert moved > 0
    assert not refused, refused[:3]
    for job_id in added:
        info = await service.wait_for_job(BANK, job_id, timeout=30)
        assert info.state == "completed", (job_id, info.state, info.failed_reason)
    assert redis_cluster.master_of(tag).port == target.port
    source_client = source.client()
    try:
        assert source_client.cluster("COUNTKEYSINSLOT", slot) == 0
    finally:
        source_client.close()
