"""Flows (BullMQ's FlowProducer) on every backend: a parent runs after its children."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from queuekit import (
    BankSyncJobData,
    FlowJob,
    FlowNode,
    JobContext,
    JobResult,
    JobState,
    PayloadValidationError,
    QueueName,
    QueueService,
    ReportJobData,
    SensitiveDataError,
)
from queuekit.testing import InMemoryQueueService
from tests.support.waiting import eventually

BANK, REPORTS, NOTIFY = QueueName.BANK_SYNC, QueueName.REPORTS, QueueName.NOTIFICATIONS
REPORT = ReportJobData(user_id="u1", report_type="monthly", start_date="2026-11-01",
                       end_date="2026-11-30")
NOTE = {"userId": "u1", "type": "email", "templateId": "t1"}
ONCE = {"attempts": 1}


def sync(account: str) -> BankSyncJobData:
    return BankSyncJobData(user_id="u1", account_id=account, sync_type="full")


def child_key(service: QueueService, queue: str, job_id: str) -> str:
    # On Redis Cluster the queue's prefix is hash-tagged ("{prefix}" or "{prefix:queue}").
    queue_prefix = getattr(service, "queue_prefix", lambda _q: service.settings.redis.prefix)
    return f"{queue_prefix(queue)}:{queue}:{job_id}"


async def stored_items(service: QueueService) -> int:
    """Keys of this test's prefix on Redis; jobs in memory."""
    if isinstance(service, InMemoryQueueService):
        return sum(len(service.queue_store(q).jobs) for q in QueueName)
    client: Any = service.connection.client  # type: ignore[attr-defined]
    # "*prefix*": the keys start with "prefix:" or, on Redis Cluster, "{prefix".
    pattern = f"*{service.settings.redis.prefix}*"
    return len([key async for key in client.scan_iter(pattern)])


async def test_parent_runs_after_children_on_two_queues_and_reads_their_values(
        service: QueueService) -> None:
    order: list[str] = []
    values: dict[str, Any] = {}

    async def sync_account(job: JobContext[BankSyncJobData]) -> JobResult:
        order.append(job.data.account_id)
        return JobResult(success=True, data={"account": job.data.account_id})

    async def notify(job: JobContext[Any]) -> JobResult:
        order.append("notify")
        return JobResult(success=True, data={"sent": 1})

    async def report(job: JobContext[ReportJobData]) -> JobResult:
        order.append("report")
        values.update(await job.get_children_values())
        return JobResult(success=True)

    node = await service.add_flow(FlowJob(REPORTS, "monthly-report", REPORT, children=[
        FlowJob(BANK, "sync-transactions", sync("a1")),
        FlowJob(BANK, "sync-transactions", sync("a2")),
        FlowJob(NOTIFY, "send", NOTE),
    ]))
    assert isinstance(node, FlowNode)
    assert node.job.state == JobState.WAITING_CHILDREN and node.job.queue == REPORTS
    assert [c.job.state for c in node.children] == [JobState.WAITING] * 3
    assert (await service.get_job_counts(REPORTS))["waiting-children"] == 1

    service.create_worker(REPORTS, report)
    service.create_worker(BANK, sync_account)
    service.create_worker(NOTIFY, notify)
    info = await service.wait_for_job(REPORTS, node.job.id, timeout=10)

    assert info.state == JobState.COMPLETED
    assert order[-1] == "report" and sorted(order[:-1]) == ["a1", "a2", "notify"]
    a1, a2, note = node.children
    assert values == {
        child_key(service, BANK, a1.job.id): {"success": True, "data": {"account": "a1"}},
        child_key(service, BANK, a2.job.id): {"success": True, "data": {"account": "a2"}},
        child_key(service, NOTIFY, note.job.id): {"success": True, "data": {"sent": 1}},
    }
    flow = await service.get_flow(REPORTS, node.job.id)
    assert flow is not None and flow.job.state == JobState.COMPLETED
    assert sorted(c.job.id for c in flow.children) == sorted(c.job.id for c in node.children)
    assert all(c.job.state == JobState.COMPLETED for c in flow.children)


async def test_nested_flow_runs_bottom_up(service: QueueService) -> None:
    order: list[str] = []

    async def sync_account(job: JobContext[BankSyncJobData]) -> JobResult:
        order.append(job.data.account_id)
        return JobResult(success=True)

    async def report(job: JobContext[ReportJobData]) -> JobResult:
        order.append(f"report:{len(await job.get_children_values())}")
        return JobResult(success=True)

    node = await service.add_flow(FlowJob(REPORTS, "annual", REPORT, children=[
        FlowJob(BANK, "sync", sync("middle"), children=[FlowJob(BANK, "sync", sync("leaf"))]),
    ]))
    middle = node.children[0]
    assert middle.job.state == JobState.WAITING_CHILDREN
    service.create_worker(BANK, sync_account)
    service.create_worker(REPORTS, report)
    info = await service.wait_for_job(REPORTS, node.job.id, timeout=10)
    assert info.state == JobState.COMPLETED
    assert order == ["leaf", "middle", "report:1"]
    flow = await service.get_flow(REPORTS, node.job.id)
    assert flow is not None
    assert [c.job.id for c in flow.children] == [middle.job.id]
    assert [g.job.id for g in flow.children[0].children] == [middle.children[0].job.id]


async def failing_flow(service: QueueService, options: dict[str, Any]) -> FlowNode:
    async def sync_account(job: JobContext[BankSyncJobData]) -> JobResult:
        if job.data.account_id == "bad":
            raise RuntimeError("bank is down")
        return JobResult(success=True, data=job.data.account_id)

    node = await service.add_flow(FlowJob(REPORTS, "monthly-report", REPORT, children=[
        FlowJob(BANK, "sync", sync("bad"), {**ONCE, **options}),
        FlowJob(BANK, "sync", sync("good"), ONCE),
    ]))
    service.create_worker(BANK, sync_account)
    return node


async def test_fail_parent_on_failure_fails_the_parent_with_the_childs_key(
        service: QueueService) -> None:
    ran: list[str] = []

    async def report(job: JobContext[ReportJobData]) -> JobResult:
        ran.append(job.id)
        return JobResult(success=True)

    node = await failing_flow(service, {"fail_parent_on_failure": True})
    service.create_worker(REPORTS, report)
    info = await service.wait_for_job(REPORTS, node.job.id, timeout=10)
    bad = node.children[0].job
    assert info.state == JobState.FAILED
    # BullMQ's deferred failure: the parent never runs, it fails naming the child.
    assert info.failed_reason == f"child {child_key(service, BANK, bad.id)} failed"
    assert ran == []
    assert (await service.get_job(BANK, bad.id)).state == JobState.FAILED  # type: ignore[union-attr]


async def test_ignore_dependency_on_failure_runs_the_parent_without_the_value(
        service: QueueService) -> None:
    seen: list[dict[str, Any]] = []

    async def report(job: JobContext[ReportJobData]) -> JobResult:
        seen.append(await job.get_children_values())
        return JobResult(success=True)

    node = await failing_flow(service, {"ignore_dependency_on_failure": True})
    service.create_worker(REPORTS, report)
    info = await service.wait_for_job(REPORTS, node.job.id, timeout=10)
    good = node.children[1].job
    assert info.state == JobState.COMPLETED
    assert seen == [{child_key(service, BANK, good.id): {"success": True, "data": "good"}}]
    # The ignored child stays part of the tree (BullMQ keeps it in <parent>:failed).
    flow = await service.get_flow(REPORTS, node.job.id)
    assert flow is not None
    assert sorted(c.job.state for c in flow.children) == [JobState.COMPLETED, JobState.FAILED]


async def test_remove_dependency_on_failure_runs_the_parent_and_forgets_the_child(
        service: QueueService) -> None:
    async def report(job: JobContext[ReportJobData]) -> JobResult:
        return JobResult(success=True, data=len(await job.get_children_values()))

    node = await failing_flow(service, {"remove_dependency_on_failure": True})
    service.create_worker(REPORTS, report)
    info = await service.wait_for_job(REPORTS, node.job.id, timeout=10)
    assert info.state == JobState.COMPLETED
    assert info.return_value == JobResult(success=True, data=1)
    flow = await service.get_flow(REPORTS, node.job.id)
    assert flow is not None
    assert [c.job.id for c in flow.children] == [node.children[1].job.id]


async def test_without_an_option_a_failed_child_leaves_the_parent_waiting(
        service: QueueService) -> None:
    async def report(job: JobContext[ReportJobData]) -> JobResult:
        raise AssertionError("must not run")

    node = await failing_flow(service, {})
    service.create_worker(REPORTS, report)
    bad, good = (c.job for c in node.children)
    await service.wait_for_job(BANK, bad.id, timeout=10)
    await service.wait_for_job(BANK, good.id, timeout=10)
    await asyncio.sleep(0.1)  # give a wrongly released parent the chance to run
    parent = await service.get_job(REPORTS, node.job.id)
    assert parent is not None and parent.state == JobState.WAITING_CHILDREN


async def test_invalid_child_writes_nothing_and_names_its_path(service: QueueService) -> None:
    await service.add_job(BANK, "sync", sync("already-there"))  # so the count can move
    before = await stored_items(service)
    assert before > 0
    bad_report = {**REPORT.to_wire(), "startDate": "2026-12-31"}
    cases: list[tuple[FlowJob, str]] = [
        (FlowJob(REPORTS, "r", REPORT, children=[
            FlowJob(BANK, "s", sync("a1")),
            FlowJob(BANK, "s", sync("a2"), children=[
                FlowJob(BANK, "s", {"userId": "u1", "accountId": "a3", "syncType": "x"})]),
        ]), "children[1].children[0].syncType"),
        (FlowJob(REPORTS, "r", REPORT, children=[FlowJob("no-such-queue", "s", {})]),
         "children[0].queue"),
        (FlowJob(REPORTS, "r", bad_report, children=[FlowJob(BANK, "s", sync("a1"))]),
         "(root)"),
        (FlowJob(REPORTS, "r", REPORT, children=[
            FlowJob(BANK, "s", sync("a1"), {"timeout": 0})]), "children[0].timeout"),
        (FlowJob(REPORTS, "r", REPORT, children=[FlowJob(BANK, "", sync("a1"))]),
         "children[0].name"),
        (FlowJob(REPORTS, "r", REPORT, children=[]), "children"),
        (FlowJob(REPORTS, "r", REPORT, children=[FlowJob(BANK, "s", sync("a1"), {
            "fail_parent_on_failure": True, "ignore_dependency_on_failure": True})]),
         "children[0].(root)"),
    ]
    for flow, field in cases:
        with pytest.raises(PayloadValidationError) as caught:
            await service.add_flow(flow)
        assert field in caught.value.fields, (field, caught.value)
    secret = {**NOTE, "data": {"apiKey": "s3cret"}}
    with pytest.raises(SensitiveDataError) as secret_error:
        await service.add_flow(FlowJob(REPORTS, "r", REPORT, children=[
            FlowJob(BANK, "s", sync("a1")), FlowJob(NOTIFY, "n", secret)]))
    assert secret_error.value.fields == ("children[1].data.apiKey",)
    assert await stored_items(service) == before


async def test_get_flow_of_a_missing_job_is_none(service: QueueService) -> None:
    assert await service.get_flow(REPORTS, "nope") is None


async def test_plain_job_has_no_children_values(service: QueueService) -> None:
    seen: list[dict[str, Any]] = []

    async def sync_account(job: JobContext[BankSyncJobData]) -> JobResult:
        seen.append(await job.get_children_values())
        return JobResult(success=True)

    job = await service.add_job(BANK, "sync", sync("a1"))
    service.create_worker(BANK, sync_account)
    await service.wait_for_job(BANK, job.id, timeout=10)
    assert seen == [{}]
    await eventually(lambda: service.get_job_counts(BANK), lambda c: c["completed"] == 1)


async def test_cancelling_a_waiting_child_releases_its_parent(service: QueueService) -> None:
    async def report(job: JobContext[ReportJobData]) -> JobResult:
        return JobResult(success=True, data=len(await job.get_children_values()))

    node = await service.add_flow(FlowJob(REPORTS, "monthly-report", REPORT, children=[
        FlowJob(BANK, "sync", sync("a1"))]))
    service.create_worker(REPORTS, report)
    # A parent waiting for its children is not cancelled (documented).
    assert await service.cancel_job(REPORTS, node.job.id) is False
    # No bank-sync worker: the child waits, and cancelling removes it (BullMQ's removeJob
    # takes it out of the parent's dependencies, which then moves the parent to wait).
    assert await service.cancel_job(BANK, node.children[0].job.id) is True
    info = await service.wait_for_job(REPORTS, node.job.id, timeout=10)
    assert info.state == JobState.COMPLETED
    assert info.return_value == JobResult(success=True, data=0)


async def test_delayed_and_prioritized_children_and_a_delayed_parent(
        service: QueueService) -> None:
    finished: dict[str, float] = {}

    async def sync_account(job: JobContext[BankSyncJobData]) -> JobResult:
        return JobResult(success=True)

    async def report(job: JobContext[ReportJobData]) -> JobResult:
        return JobResult(success=True)

    node = await service.add_flow(FlowJob(REPORTS, "r", REPORT, {"delay": 200}, children=[
        FlowJob(BANK, "s", sync("later"), {"delay": 150}),
        FlowJob(BANK, "s", sync("urgent"), {"priority": 1}),
    ]))
    assert [c.job.state for c in node.children] == [JobState.DELAYED, JobState.PRIORITIZED]
    service.create_worker(BANK, sync_account)
    service.create_worker(REPORTS, report)
    info = await service.wait_for_job(REPORTS, node.job.id, timeout=10)
    for child in node.children:
        done = await service.get_job(BANK, child.job.id)
        assert done is not None and done.finished_at is not None
        finished[child.job.data.account_id] = done.finished_at.timestamp()
    assert info.state == JobState.COMPLETED and info.processed_at is not None
    # BullMQ delays a parent from the moment its last child finished.
    waited = info.processed_at.timestamp() - max(finished.values())
    assert waited >= 0.19, waited
