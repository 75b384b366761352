"""Jobs added by queuekit are processed by a Node BullMQ worker (the NestJS side)."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import time
from typing import Any

import pytest

from queuekit import (
    BackoffSettings,
    BankSyncJobData,
    JobOptions,
    JobResult,
    JobState,
    NotificationJobData,
    QueueName,
    RedisQueueService,
    ReportJobData,
)
from queuekit.events import EventType, QueueEvent
from tests.conftest import SettingsFactory
from tests.interop.node_bullmq import NPM_TIMEOUT, NodeRunner

# The first test of the session may run `npm ci` in its set-up.
pytestmark = pytest.mark.timeout(NPM_TIMEOUT + 60)


async def test_node_worker_processes_queuekit_jobs_with_nestjs_payloads(
    node: NodeRunner, make_settings: SettingsFactory, key_prefix: str
) -> None:
    queues = [QueueName.BANK_SYNC, QueueName.NOTIFICATIONS, QueueName.REPORTS]
    worker = await node.start("worker.mjs", prefix=key_prefix, queues=queues, expect=3,
                              progress=60)
    await worker.expect("ready")
    options = JobOptions(attempts=3, backoff=BackoffSettings(type="exponential", delay=1000))
    jobs: list[tuple[QueueName, str, Any, dict[str, Any]]] = [
        (QueueName.BANK_SYNC, "sync-transactions",
         BankSyncJobData(user_id="user-1", account_id="acct-1", sync_type="incremental"),
         {"userId": "user-1", "accountId": "acct-1", "syncType": "incremental"}),
        (QueueName.NOTIFICATIONS, "send-notification",
         NotificationJobData(user_id="user-2", type="email", template_id="welcome",
                             data={"firstName": "Ada", "amount": 12.5}),
         {"userId": "user-2", "type": "email", "templateId": "welcome",
          "data": {"firstName": "Ada", "amount": 12.5}}),
        (QueueName.REPORTS, "generate-report",
         ReportJobData(user_id="user-3", report_type="monthly",
                       start_date=dt.date(2024, 1, 1), end_date=dt.date(2024, 1, 31)),
         {"userId": "user-3", "reportType": "monthly", "startDate": "2024-01-01",
          "endDate": "2024-01-31"}),
    ]
    qs = await RedisQueueService.connect(make_settings())
    try:
        added = {}
        for queue, name, payload, _wire in jobs:
            job = await qs.add_job(queue, name, payload, options=options)
            added[queue] = (job, time.monotonic())
        infos = {}
        for queue, (job, added_at) in added.items():
            infos[queue] = await qs.wait_for_job(queue, job.id, timeout=15)
            # The Node worker was idle, blocked on the queue's marker key for up to its
            # drainDelay (5 s): queuekit's add must wake it, as Node's own add does.
            assert time.monotonic() - added_at < 3.0, f"{queue}: Node picked the job up late"
        messages = await worker.read_all(timeout=15)
    finally:
        await qs.close()

    seen = {m["queue"]: m for m in messages if m["event"] == "job"}
    assert [m["event"] for m in messages][-1] == "done"
    assert sorted(seen) == sorted(queues)
    for queue, name, payload, wire in jobs:
        job, _ = added[queue]
        view = seen[queue]
        # The Node processor sees the NestJS interfaces' camelCase keys, nothing else.
        assert view["id"] == job.id
        assert view["name"] == name
        assert view["data"] == wire
        assert sorted(view["dataKeys"]) == sorted(wire)
        assert view["attemptsMade"] == 0
        assert view["opts"]["attempts"] == 3
        assert view["opts"]["backoff"] == {"type": "exponential", "delay": 1000}
        assert view["opts"]["removeOnComplete"] == {"count": 100, "age": 24 * 3600}
        assert view["opts"]["removeOnFail"] == {"count": 500}
        # The Node worker's return value and progress, read back by queuekit.
        info = infos[queue]
        assert info.state == JobState.COMPLETED
        assert isinstance(info.return_value, JobResult)
        assert info.return_value == JobResult(
            success=True, message=f"processed by node bullmq on {queue}",
            data={"queue": str(queue), "jobId": job.id})
        assert info.progress == 60
        assert info.data == payload
        assert info.attempts_made == 1
        assert info.failed_reason is None
        assert info.processed_at is not None and info.finished_at is not None


async def test_node_worker_retries_with_queuekit_backoff_and_queuekit_sees_the_events(
    node: NodeRunner, make_settings: SettingsFactory, key_prefix: str
) -> None:
    backoff_ms = 200
    worker = await node.start("worker.mjs", prefix=key_prefix, queues=[QueueName.BANK_SYNC],
                              expect=1, progress=100, failAttempts=2)
    await worker.expect("ready")
    qs = await RedisQueueService.connect(make_settings())
    try:
        async with qs.events(QueueName.BANK_SYNC) as stream:
            job = await qs.add_job(
                QueueName.BANK_SYNC, "sync-transactions",
                BankSyncJobData(user_id="user-8", account_id="acct-8", sync_type="full"),
                options=JobOptions(attempts=3, backoff=BackoffSettings(
                    type="exponential", delay=backoff_ms)))
            events: list[QueueEvent] = []
            async with asyncio.timeout(15):
                async for event in stream:
                    if event.job_id == job.id:
                        events.append(event)
                    if event.type in (EventType.COMPLETED, EventType.FAILED) and \
                            not event.will_retry:
                        break
        info = await qs.wait_for_job(QueueName.BANK_SYNC, job.id, timeout=5)
        messages = await worker.read_all(timeout=15)
    finally:
        await qs.close()

    # queuekit's event stream tells a Node worker's retries as it tells its own.
    retries = [(e.type, e.attempt, e.will_retry) for e in events
               if e.type in (EventType.FAILED, EventType.RETRYING, EventType.COMPLETED)]
    assert retries == [
        (EventType.FAILED, 1, True), (EventType.RETRYING, 2, False),
        (EventType.FAILED, 2, True), (EventType.RETRYING, 3, False),
        (EventType.COMPLETED, None, False),
    ]
    failed = [e for e in events if e.type == EventType.FAILED]
    assert [e.data for e in failed] == [f"node worker failed attempt {n}" for n in (1, 2)]
    # The backoff still to wait when queuekit read the event: at most what was asked.
    waits = [e.data for e in events if e.type == EventType.RETRYING]
    assert 0 <= waits[0] <= backoff_ms and 0 <= waits[1] <= 2 * backoff_ms, waits
    assert [e.data for e in events if e.type == EventType.PROGRESS] == [100]
    assert info.state == JobState.COMPLETED
    assert info.attempts_made == 3
    assert isinstance(info.return_value, JobResult) and info.return_value.success
    # Node waited the exponential backoff queuekit asked for: 200 ms, then 400 ms.
    runs = [m for m in messages if m["event"] == "job"]
    assert [m["attemptsMade"] for m in runs] == [0, 1, 2]
    gaps = [(b["seenAt"] - a["seenAt"]) / 1000 for a, b in itertools.pairwise(runs)]
    for gap, expected in zip(gaps, [backoff_ms / 1000, 2 * backoff_ms / 1000], strict=True):
        # Only a lower bound here: how late Node starts a due job is not queuekit's to keep.
        assert gap >= expected - 0.005, gaps
