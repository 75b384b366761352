"""Node BullMQ (ioredis ``Cluster``) and queuekit share queues on the loopback cluster.

Node is given the documented prefix: ``{<prefix>:<queue>}`` per queue with
``cluster_slots: queue`` (the default), ``{<prefix>}`` for every queue with ``shared``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from queuekit import (
    BankSyncJobData,
    JobContext,
    JobResult,
    JobState,
    NotificationJobData,
    QueueName,
    RedisQueueService,
)
from tests.conftest import SettingsFactory
from tests.interop.node_bullmq import NPM_TIMEOUT, NodeBullMQ, NodeProcess, NodeRunner
from tests.support.redis_cluster import RedisClusterServers

pytestmark = pytest.mark.timeout(NPM_TIMEOUT + 60)

BANK, NOTE = QueueName.BANK_SYNC, QueueName.NOTIFICATIONS


class ClusterNodeRunner(NodeRunner):
    """The Node scripts with an ioredis ``Cluster`` connection (``cluster: true``)."""

    async def start(self, script: str, **arguments: Any) -> NodeProcess:
        return await super().start(script, cluster=True, **arguments)


@pytest.fixture
async def node(node_bullmq: NodeBullMQ,
               redis_cluster: RedisClusterServers) -> AsyncIterator[NodeRunner]:
    runner = ClusterNodeRunner(node_bullmq, redis_cluster.nodes[1].port)
    yield runner
    await runner.stop_all()


def node_prefix(prefix: str, queue: str, slots: str) -> str:
    """What the README tells Node users to pass as ``prefix``."""
    return f"{{{prefix}}}" if slots == "shared" else f"{{{prefix}:{queue}}}"


@pytest.mark.parametrize("slots", ["queue", "shared"])
async def test_node_jobs_run_on_a_queuekit_worker(
        node: NodeRunner, make_settings: SettingsFactory, key_prefix: str,
        slots: str) -> None:
    qs = await RedisQueueService.connect(make_settings(redis={"cluster_slots": slots}))
    seen: list[BankSyncJobData] = []

    async def sync(job: JobContext[BankSyncJobData]) -> JobResult:
        seen.append(job.data)
        await job.update_progress(70)
        return JobResult(success=True, message="synced by queuekit")

    try:
        qs.create_worker(BANK, sync)
        added = await node.add_jobs(node_prefix(key_prefix, BANK, slots), BANK, [
            {"name": "sync-transactions",
             "data": {"userId": f"u-{n}", "accountId": "acct", "syncType": "full"},
             "opts": {"attempts": 2}} for n in range(3)])
        infos = [await qs.wait_for_job(BANK, job["id"], timeout=15) for job in added]
        views = await node.get_jobs(node_prefix(key_prefix, BANK, slots), BANK,
                                    [job["id"] for job in added])
    finally:
        await qs.close()

    assert [info.state for info in infos] == [JobState.COMPLETED] * 3
    assert sorted(d.user_id for d in seen) == ["u-0", "u-1", "u-2"]
    for view in views:
        assert view is not None
        assert view["state"] == "completed"
        assert view["progress"] == 70
        assert view["returnvalue"]["message"] == "synced by queuekit"


@pytest.mark.parametrize("slots", ["queue", "shared"])
async def test_queuekit_jobs_run_on_a_node_worker(
        node: NodeRunner, make_settings: SettingsFactory, key_prefix: str,
        slots: str) -> None:
    queues = [BANK, NOTE]
    worker = await node.start(
        "worker.mjs", prefix=key_prefix, queues=queues, expect=2, progress=60,
        prefixes={str(q): node_prefix(key_prefix, q, slots) for q in queues})
    await worker.expect("ready")
    qs = await RedisQueueService.connect(make_settings(redis={"cluster_slots": slots}))
    try:
        bank = await qs.add_job(BANK, "sync-transactions", BankSyncJobData(
            user_id="u1", account_id="a1", sync_type="incremental"))
        note = await qs.add_job(NOTE, "send", NotificationJobData(
            user_id="u1", type="email", template_id="welcome"))
        infos = {BANK: await qs.wait_for_job(BANK, bank.id, timeout=15),
                 NOTE: await qs.wait_for_job(NOTE, note.id, timeout=15)}
        messages = await worker.read_all(timeout=15)
    finally:
        await qs.close()

    assert {m["queue"] for m in messages if m["event"] == "job"} == {BANK, NOTE}
    for queue, info in infos.items():
        assert info.state == JobState.COMPLETED
        assert info.progress == 60
        assert info.return_value == JobResult(
            success=True, message=f"processed by node bullmq on {queue}",
            data={"queue": str(queue), "jobId": info.id})
