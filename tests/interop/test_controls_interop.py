"""Deduplication and pause shared with Node BullMQ 6, both ways."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from queuekit import (
    BankSyncJobData,
    Deduplication,
    JobContext,
    JobOptions,
    JobResult,
    JobState,
    QueueName,
    RedisQueueService,
)
from queuekit.events import EventType
from tests.interop.node_bullmq import NPM_TIMEOUT, NodeRunner, NodeScriptError

pytestmark = pytest.mark.timeout(NPM_TIMEOUT + 60)

BANK = QueueName.BANK_SYNC
WIRE = {"userId": "u1", "accountId": "a1", "syncType": "full"}




async def control(node: NodeRunner, prefix: str, action: str, **extra: Any) -> Any:
    child = await node.start("control.mjs", prefix=prefix, queue=BANK, action=action, **extra)
    result = (await child.expect("control"))["result"]
    assert await child.wait(20) == 0
    return result


async def test_node_add_is_deduplicated_against_a_queuekit_job(
    qs: RedisQueueService, node: NodeRunner, key_prefix: str,
) -> None:
    options = JobOptions(deduplication=Deduplication(id="sync-a1"))
    async with qs.events(BANK) as events:
        ours = await qs.add_job(BANK, "sync", BankSyncJobData(
            user_id="u1", account_id="a1", sync_type="full"), options=options)
        (theirs,) = await node.add_jobs(key_prefix, BANK, [
            {"name": "sync", "data": {**WIRE, "accountId": "from-node"},
             "opts": {"deduplication": {"id": "sync-a1"}}}])
        async with asyncio.timeout(10):
            event = await anext(e async for e in events if e.type == EventType.DEDUPLICATED)
    assert theirs["id"] == ours.id  # Node's add answered with queuekit's job
    assert event.job_id == ours.id and event.data["deduplication_id"] == "sync-a1"
    assert (await qs.get_job_counts(BANK))["waiting"] == 1
    assert await control(node, key_prefix, "dedupJobId", dedupId="sync-a1") == ours.id
    views = await node.get_jobs(key_prefix, BANK, [ours.id])
    assert views[0] is not None and views[0]["data"]["accountId"] == "a1"
    assert views[0]["opts"]["deduplication"] == {"id": "sync-a1"}  # Node decodes `de`


async def test_queuekit_add_is_deduplicated_against_a_node_job(
    qs: RedisQueueService, node: NodeRunner, key_prefix: str,
) -> None:
    (theirs,) = await node.add_jobs(key_prefix, BANK, [
        {"name": "sync", "data": WIRE,
         "opts": {"deduplication": {"id": "sync-a1", "ttl": 60_000}, "attempts": 1}}])
    ours = await qs.add_job(BANK, "sync", {**WIRE, "accountId": "from-python"},
                            options={"deduplication": {"id": "sync-a1", "ttl": 60_000}})
    assert ours.id == theirs["id"]
    assert ours.data.account_id == "a1"
    assert await qs.get_deduplication_job_id(BANK, "sync-a1") == theirs["id"]
    assert (await qs.get_job_counts(BANK))["waiting"] == 1


async def test_node_worker_respects_a_queuekit_pause(
    qs: RedisQueueService, node: NodeRunner, key_prefix: str,
) -> None:
    await qs.pause(BANK)
    assert await control(node, key_prefix, "isPaused") is True
    worker = await node.start("worker.mjs", prefix=key_prefix, queues=[BANK], expect=1)
    await worker.expect("ready")
    job = await qs.add_job(BANK, "sync", WIRE)
    with pytest.raises(NodeScriptError, match="said nothing"):
        await worker.read(timeout=1.5)  # paused: the Node worker must not take the job
    assert (await qs.get_job(BANK, job.id)).state == JobState.WAITING  # type: ignore[union-attr]
    await qs.resume(BANK)
    seen = await worker.expect("job", timeout=10)
    assert seen["id"] == job.id
    assert (await qs.wait_for_job(BANK, job.id, timeout=10)).state == JobState.COMPLETED
    await worker.read_all(timeout=15)


async def test_queuekit_worker_respects_a_node_pause(
    qs: RedisQueueService, node: NodeRunner, key_prefix: str,
) -> None:
    await control(node, key_prefix, "pause")
    assert await qs.is_paused(BANK)
    started: list[str] = []

    async def process(job: JobContext[BankSyncJobData]) -> JobResult:
        started.append(job.id)
        return JobResult(success=True)

    qs.create_worker(BANK, process)
    job = await qs.add_job(BANK, "sync", WIRE)
    await asyncio.sleep(1.0)  # paused: give the worker time to (wrongly) take it
    assert started == []
    await control(node, key_prefix, "resume")
    assert (await qs.wait_for_job(BANK, job.id, timeout=10)).state == JobState.COMPLETED
