"""Flows under load on real Redis, both engines: 50 parents x 5 children at concurrency 20.

The fast engine completes a child through ``moveToFinished`` with fetch-next on bullmq's
``Job`` (children carry ``parentKey``): the next job it hands over must be locked (bullmq
packs ``lockDuration`` from the job's queue options; without it the script fails midway
and leaves the next job active without a lock). A parent whose fpof child fails gets
BullMQ's deferred failure and is failed with it.
"""

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
from tests.support.waiting import eventually

BANK, REPORTS = QueueName.BANK_SYNC, QueueName.REPORTS
PARENTS, CHILDREN = 50, 5
KEEP = {"remove_on_complete": False, "remove_on_fail": False, "attempts": 1}


@pytest.mark.parametrize("engine", ["fast", "bullmq"])
async def test_fifty_flows_of_five_children_at_concurrency_twenty(
        make_settings: SettingsFactory, engine: str) -> None:
    service = await RedisQueueService.connect(make_settings(worker={"engine": engine}))
    try:
        seen: dict[str, dict[str, Any]] = {}

        async def sync(job: JobContext[BankSyncJobData]) -> JobResult:
            if job.data.account_id.endswith("-bad"):
                raise RuntimeError("bank is down")
            return JobResult(success=True, data=job.data.account_id)

        async def report(job: JobContext[ReportJobData]) -> JobResult:
            seen[job.id] = await job.get_children_values()
            return JobResult(success=True)

        roots = []
        for p in range(PARENTS):
            failing = p % 10 == 0  # every tenth flow has a child that fails its parent
            children = [
                FlowJob(BANK, "sync", {"userId": "u1", "accountId": f"p{p}-c{c}"
                                       + ("-bad" if failing and c == 0 else ""),
                                       "syncType": "full"},
                        {**KEEP, "fail_parent_on_failure": True})
                for c in range(CHILDREN)]
            roots.append(await service.add_flow(FlowJob(
                REPORTS, "report", {"userId": "u1", "reportType": "monthly",
                                    "startDate": "2026-11-01", "endDate": "2026-11-30"},
                KEEP, children=children)))
        service.create_worker(BANK, sync, concurrency=20)
        service.create_worker(REPORTS, report, concurrency=20)

        for p, root in enumerate(roots):
            info = await service.wait_for_job(REPORTS, root.job.id, timeout=60)
            if p % 10 == 0:
                bad = root.children[0].job.id
                assert info.state == JobState.FAILED
                assert info.failed_reason == f"child {service.prefix}:{BANK}:{bad} failed"
                assert root.job.id not in seen
            else:
                assert info.state == JobState.COMPLETED, info
                assert seen[root.job.id] == {
                    f"{service.prefix}:{BANK}:{c.job.id}":
                        {"success": True, "data": c.job.data.account_id}
                    for c in root.children}
        counts = await eventually(lambda: service.get_job_counts(BANK),
                                  lambda c: c["completed"] + c["failed"] == PARENTS * CHILDREN)
        assert counts["failed"] == PARENTS // 10 and counts["active"] == 0
        reports = await service.get_job_counts(REPORTS)
        assert reports["waiting-children"] == 0 and reports["active"] == 0
        # No job was handed over without its lock (the fetch-next pitfall).
        client = service.connection.client
        assert [k async for k in client.scan_iter(f"{service.prefix}:*:lock")] == []
    finally:
        await service.close()
