"""Flows shared with Node BullMQ 6: a Node ``FlowProducer`` flow run by queuekit workers
(both engines), and a queuekit flow run by Node workers."""

from __future__ import annotations

from typing import Any

import pytest

from queuekit import (
    BankSyncJobData,
    FlowJob,
    JobContext,
    JobResult,
    JobState,
    QueueName,
    RedisQueueService,
    ReportJobData,
)
from tests.conftest import SettingsFactory
from tests.interop.node_bullmq import NPM_TIMEOUT, NodeRunner

pytestmark = pytest.mark.timeout(NPM_TIMEOUT + 60)

BANK, REPORTS, NOTIFY = QueueName.BANK_SYNC, QueueName.REPORTS, QueueName.NOTIFICATIONS
REPORT = {"userId": "u1", "reportType": "monthly", "startDate": "2026-11-01",
          "endDate": "2026-11-30"}


def sync(account: str) -> dict[str, str]:
    return {"userId": "u1", "accountId": account, "syncType": "full"}


@pytest.mark.parametrize("engine", ["fast", "bullmq"])
async def test_node_flow_producer_flow_is_run_by_queuekit_workers(
        node: NodeRunner, make_settings: SettingsFactory, key_prefix: str,
        engine: str) -> None:
    producer = await node.start("flow_producer.mjs", prefix=key_prefix, flow={
        "name": "monthly-report", "queueName": REPORTS, "data": REPORT,
        "children": [
            {"name": "sync", "queueName": BANK, "data": sync("a1"),
             "opts": {"failParentOnFailure": True}},
            {"name": "sync", "queueName": BANK, "data": sync("a2"),
             "children": [{"name": "send", "queueName": NOTIFY,
                           "data": {"userId": "u1", "type": "email", "templateId": "t"}}]},
        ]})
    tree = (await producer.expect("added"))["tree"]
    assert await producer.wait(20) == 0
    qs = await RedisQueueService.connect(make_settings(worker={"engine": engine}))
    try:
        values: dict[str, Any] = {}

        async def sync_account(job: JobContext[BankSyncJobData]) -> JobResult:
            below = await job.get_children_values()
            return JobResult(success=True, data={"account": job.data.account_id,
                                                 "below": len(below)})

        async def notify(job: JobContext[Any]) -> JobResult:
            return JobResult(success=True, data="sent")

        async def report(job: JobContext[ReportJobData]) -> JobResult:
            values.update(await job.get_children_values())
            return JobResult(success=True)

        flow = await qs.get_flow(REPORTS, tree["id"])
        assert flow is not None and flow.job.state == JobState.WAITING_CHILDREN
        assert sorted(c.job.id for c in flow.children) == sorted(
            c["id"] for c in tree["children"])
        for queue, processor in ((BANK, sync_account), (NOTIFY, notify), (REPORTS, report)):
            qs.create_worker(queue, processor)
        info = await qs.wait_for_job(REPORTS, tree["id"], timeout=15)
        assert info.state == JobState.COMPLETED
        a1, a2 = tree["children"]
        assert values == {
            f"{key_prefix}:{BANK}:{a1['id']}": {"success": True,
                                                "data": {"account": "a1", "below": 0}},
            f"{key_prefix}:{BANK}:{a2['id']}": {"success": True,
                                                "data": {"account": "a2", "below": 1}},
        }
    finally:
        await qs.close()


async def test_queuekit_flow_is_run_by_node_workers(
        node: NodeRunner, make_settings: SettingsFactory, key_prefix: str) -> None:
    worker = await node.start("flow_worker.mjs", prefix=key_prefix,
                              queues=[REPORTS, BANK], expect=3)
    await worker.expect("ready")
    qs = await RedisQueueService.connect(make_settings())
    try:
        root = await qs.add_flow(FlowJob(REPORTS, "monthly-report", ReportJobData(**REPORT),
                                         children=[
            FlowJob(BANK, "sync", BankSyncJobData(**sync("a1"))),
            FlowJob(BANK, "sync", BankSyncJobData(**sync("a2")),
                    {"fail_parent_on_failure": True}),
        ]))
        info = await qs.wait_for_job(REPORTS, root.job.id, timeout=15)
        messages = await worker.read_all(timeout=15)
    finally:
        await qs.close()
    assert info.state == JobState.COMPLETED
    a1, a2 = (c.job.id for c in root.children)
    child_value = {"success": True, "data": {"queue": BANK, "children": {}}}
    # The Node parent read the children's values through its own getChildrenValues.
    assert info.return_value == JobResult(success=True, data={"queue": REPORTS, "children": {
        f"{key_prefix}:{BANK}:{a1}": child_value, f"{key_prefix}:{BANK}:{a2}": child_value}})
    jobs = [m for m in messages if m["event"] == "job"]
    assert [m["queue"] for m in jobs][-1] == REPORTS
    assert {m["parentKey"] for m in jobs if m["queue"] == BANK} == {
        f"{key_prefix}:{REPORTS}:{root.job.id}"}


async def test_node_worker_fails_a_queuekit_parent_through_fail_parent_on_failure(
        node: NodeRunner, make_settings: SettingsFactory, key_prefix: str) -> None:
    worker = await node.start("flow_worker.mjs", prefix=key_prefix,
                              queues=[REPORTS, BANK], expect=3, fail=["bad"])
    await worker.expect("ready")
    qs = await RedisQueueService.connect(make_settings())
    try:
        root = await qs.add_flow(FlowJob(REPORTS, "monthly-report", ReportJobData(**REPORT),
                                         children=[
            FlowJob(BANK, "sync", BankSyncJobData(**sync("bad")),
                    {"fail_parent_on_failure": True, "attempts": 1}),
            FlowJob(BANK, "sync", BankSyncJobData(**sync("ok")), {"attempts": 1}),
        ]))
        info = await qs.wait_for_job(REPORTS, root.job.id, timeout=15)
        await worker.read_all(timeout=15)
    finally:
        await qs.close()
    bad = root.children[0].job.id
    assert info.state == JobState.FAILED
    assert info.failed_reason == f"child {key_prefix}:{BANK}:{bad} failed"


async def test_node_worker_runs_a_job_with_a_queuekit_timeout_unharmed(
        node: NodeRunner, make_settings: SettingsFactory, key_prefix: str) -> None:
    worker = await node.start("worker.mjs", prefix=key_prefix, queues=[BANK], expect=1)
    await worker.expect("ready")
    qs = await RedisQueueService.connect(make_settings())
    try:
        job = await qs.add_job(BANK, "sync", BankSyncJobData(**sync("a1")), {"timeout": 5000})
        info = await qs.wait_for_job(BANK, job.id, timeout=15)
        messages = await worker.read_all(timeout=15)
    finally:
        await qs.close()
    assert info.state == JobState.COMPLETED
    (seen,) = [m for m in messages if m["event"] == "job"]
    assert seen["opts"]["timeout"] == 5000  # kept in the opts; Node BullMQ 6 ignores it
