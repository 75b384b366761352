"""Jobs added by Node BullMQ (the NestJS side) are processed by a queuekit worker.

Every test runs with both worker engines: queuekit's own loop over BullMQ's scripts
("fast", the default) and the bullmq package's ``Worker`` ("bullmq").
"""

from __future__ import annotations

import itertools
import time
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
from tests.interop.node_bullmq import NPM_TIMEOUT, NodeRunner

# The first test of the session may run `npm ci` in its set-up.
pytestmark = pytest.mark.timeout(NPM_TIMEOUT + 60)

#: How late a queuekit worker may start a job that became due (a retry after its backoff,
#: a delayed job) on this loaded 2-core machine. queuekit promises tens of ms; the
#: regression this guards against (bullmq rounding its blocking timeout up to whole
#: seconds) makes it ~1 s late, well outside this tolerance.
LATE_TOLERANCE_S = 0.4




async def test_retry_with_exponential_backoff_of_a_node_job(
    qs: RedisQueueService, node: NodeRunner, key_prefix: str
) -> None:
    backoff_ms = 300
    attempts: list[tuple[int, float]] = []

    async def sync(job: JobContext[BankSyncJobData]) -> JobResult:
        attempts.append((job.attempts_made, time.time()))
        assert job.data == BankSyncJobData(user_id="u-9", account_id="acct-9",
                                           sync_type="full")
        if len(attempts) < 3:
            raise RuntimeError(f"bank API unavailable (attempt {len(attempts)})")
        return JobResult(success=True, message="synced on attempt 3")

    qs.create_worker(QueueName.BANK_SYNC, sync, concurrency=1)
    [added] = await node.add_jobs(key_prefix, QueueName.BANK_SYNC, [{
        "name": "sync-transactions",
        "data": {"userId": "u-9", "accountId": "acct-9", "syncType": "full"},
        "opts": {"attempts": 3, "backoff": {"type": "exponential", "delay": backoff_ms}},
    }])
    info = await qs.wait_for_job(QueueName.BANK_SYNC, added["id"], timeout=15)

    assert info.state == JobState.COMPLETED
    assert info.attempts_made == 3
    assert info.return_value == JobResult(success=True, message="synced on attempt 3")
    assert [made for made, _ in attempts] == [0, 1, 2]
    # The worker was idle, blocked on the marker for up to drain_delay (5 s): Node's add
    # must wake it.
    assert attempts[0][1] - added["timestamp"] / 1000 < 2.0
    # Exponential backoff from the options Node wrote: 300 ms, then 600 ms. Each gap runs
    # from the start of one attempt to the start of the next, so it is the backoff plus
    # the failed attempt's own (short) run: never less than the backoff.
    gaps = [later - earlier for (_, earlier), (_, later) in itertools.pairwise(attempts)]
    for gap, expected in zip(gaps, [backoff_ms / 1000, 2 * backoff_ms / 1000], strict=True):
        assert expected - 0.005 <= gap <= expected + LATE_TOLERANCE_S, gaps

    [seen] = await node.get_jobs(key_prefix, QueueName.BANK_SYNC, [added["id"]])
    assert seen is not None
    assert seen["state"] == "completed"
    assert seen["attemptsMade"] == 3
    assert seen["returnvalue"] == {"success": True, "message": "synced on attempt 3"}
    assert len(seen["stacktrace"]) == 2
    assert all("bank API unavailable" in trace for trace in seen["stacktrace"])


async def test_progress_reaches_a_node_queue_events_listener(
    qs: RedisQueueService, node: NodeRunner, key_prefix: str
) -> None:
    listener = await node.start("events.mjs", prefix=key_prefix, queue=QueueName.REPORTS,
                                until=1)
    await listener.expect("ready")

    async def report(job: JobContext[Any]) -> JobResult:
        await job.update_progress(25)
        await job.update_progress({"stage": "rendering", "percent": 75})
        return JobResult(success=True, message="report ready", data={"pages": 3})

    qs.create_worker(QueueName.REPORTS, report)
    [added] = await node.add_jobs(key_prefix, QueueName.REPORTS, [{
        "name": "generate-report",
        "data": {"userId": "u-4", "reportType": "custom", "startDate": "2024-03-01",
                 "endDate": "2024-03-15"},
        "opts": {"attempts": 3, "backoff": {"type": "exponential", "delay": 1000}},
    }])
    job_id = added["id"]
    info = await qs.wait_for_job(QueueName.REPORTS, job_id, timeout=15)
    assert info.state == JobState.COMPLETED
    events = [e for e in await listener.read_all(timeout=15) if e.get("jobId") == job_id]

    types = [e["type"] for e in events]
    assert types.index("active") < types.index("progress") < types.index("completed"), types
    assert [e["data"] for e in events if e["type"] == "progress"] == [
        25, {"stage": "rendering", "percent": 75}]
    [completed] = [e for e in events if e["type"] == "completed"]
    assert completed["returnvalue"] == {"success": True, "message": "report ready",
                                        "data": {"pages": 3}}
    # And Node reads the last progress back from the job itself.
    [seen] = await node.get_jobs(key_prefix, QueueName.REPORTS, [job_id])
    assert seen is not None
    assert seen["progress"] == {"stage": "rendering", "percent": 75}
    assert seen["state"] == "completed"
    assert seen["attemptsMade"] == 1


async def test_delayed_node_job_runs_no_earlier_than_its_delay(
    qs: RedisQueueService, node: NodeRunner, key_prefix: str
) -> None:
    delay_ms = 1200
    started: list[tuple[JobContext[NotificationJobData], float]] = []

    async def notify(job: JobContext[NotificationJobData]) -> None:
        started.append((job, time.time()))

    qs.create_worker(QueueName.NOTIFICATIONS, notify)
    [added] = await node.add_jobs(key_prefix, QueueName.NOTIFICATIONS, [{
        "name": "send-notification",
        "data": {"userId": "u-5", "type": "push", "templateId": "reminder",
                 "data": {"firstName": "Grace"}},
        "opts": {"delay": delay_ms, "attempts": 3,
                 "backoff": {"type": "exponential", "delay": 1000}},
    }])
    assert added["state"] == "delayed"
    info = await qs.wait_for_job(QueueName.NOTIFICATIONS, added["id"], timeout=15)

    assert info.state == JobState.COMPLETED
    assert info.delay == delay_ms
    [(job, started_at)] = started
    assert job.data == NotificationJobData(user_id="u-5", type="push", template_id="reminder",
                                           data={"firstName": "Grace"})
    # Node stamped the job when it added it; queuekit may start it only once the delay is
    # over (same machine, same clock), and should not be much later.
    waited = started_at - added["timestamp"] / 1000
    assert delay_ms / 1000 <= waited <= delay_ms / 1000 + LATE_TOLERANCE_S, waited
    assert info.processed_at is not None
    assert info.processed_at.timestamp() * 1000 >= added["timestamp"] + delay_ms


async def test_invalid_node_payload_fails_without_retries_naming_the_field(
    qs: RedisQueueService, node: NodeRunner, key_prefix: str
) -> None:
    calls: list[str] = []

    async def sync(job: JobContext[BankSyncJobData]) -> JobResult:
        calls.append(job.id)
        return JobResult(success=True)

    qs.create_worker(QueueName.BANK_SYNC, sync)
    opts = {"attempts": 3, "backoff": {"type": "fixed", "delay": 50}}
    bad: list[tuple[dict[str, Any], str]] = [
        ({"userId": "u-1", "accountId": "acct-1", "syncType": "weekly"}, "syncType"),
        ({"userId": "u-1", "syncType": "full"}, "accountId"),
        ({"userId": "u-1", "accountID": "acct-1", "accountId": "acct-1", "syncType": "full"},
         "accountID"),
    ]
    added = await node.add_jobs(key_prefix, QueueName.BANK_SYNC, [
        {"name": "sync-transactions", "data": data, "opts": opts} for data, _ in bad])
    ids = [job["id"] for job in added]
    for job_id in ids:
        info = await qs.wait_for_job(QueueName.BANK_SYNC, job_id, timeout=15)
        assert info.state == JobState.FAILED
        assert info.attempts_made == 1

    seen = await node.get_jobs(key_prefix, QueueName.BANK_SYNC, ids)
    for view, (_, field) in zip(seen, bad, strict=True):
        assert view is not None
        assert view["state"] == "failed"
        assert view["attemptsMade"] == 1, "a malformed job must not be retried"
        assert f"{field}:" in view["failedReason"], view["failedReason"]
        assert "payload of job" in view["failedReason"]
    assert calls == [], "the processor must never see a malformed payload"
