"""Job schedulers shared with Node BullMQ 6, both ways.

A scheduler Node upserts keeps running under queuekit's workers (both engines advance it
as Node's worker does); a scheduler queuekit upserts is listed by Node's
``getJobSchedulers()`` with the same fields and is run (and advanced) by a Node Worker.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest

from queuekit import BankSyncJobData, JobContext, JobResult, QueueName, RedisQueueService
from tests.interop.node_bullmq import NPM_TIMEOUT, NodeRunner
from tests.support.waiting import eventually

pytestmark = pytest.mark.timeout(NPM_TIMEOUT + 60)

BANK = QueueName.BANK_SYNC
DATA = {"userId": "u-7", "accountId": "acct-7", "syncType": "incremental"}




def by_key(schedulers: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {s["key"]: s for s in schedulers}


async def test_a_node_scheduler_keeps_running_under_queuekit_workers(
    qs: RedisQueueService, node: NodeRunner, key_prefix: str
) -> None:
    every = 400
    answer = await node.schedulers(key_prefix, BANK, upsert=[{
        "id": "every-400", "repeat": {"every": every},
        "template": {"name": "sync-transactions", "data": DATA, "opts": {"attempts": 2}},
    }])
    assert answer["upserted"][0].startswith("repeat:every-400:")
    runs: list[str] = []

    async def sync(job: JobContext[BankSyncJobData]) -> JobResult:
        assert job.name == "sync-transactions"
        assert job.data == BankSyncJobData(user_id="u-7", account_id="acct-7",
                                           sync_type="incremental")
        runs.append(job.id)
        return JobResult(success=True)

    qs.create_worker(BANK, sync, concurrency=2)

    async def count() -> int:
        return len(runs)

    # The defect this guards against: one run, then nothing pending.
    await eventually(count, lambda n: n >= 5, timeout=15)
    assert len(set(runs)) == len(runs)
    due = [int(job_id.rsplit(":", 1)[1]) for job_id in runs[:5]]
    assert [b - a for a, b in itertools.pairwise(due)] == [every] * 4
    delayed = await qs.get_jobs(BANK, "delayed", limit=10)
    assert len([j for j in delayed if j.id.startswith("repeat:every-400:")]) == 1
    ours = await qs.get_job_scheduler(BANK, "every-400")
    assert ours is not None
    assert (ours.name, ours.every, ours.data) == ("sync-transactions", every, BankSyncJobData(
        user_id="u-7", account_id="acct-7", sync_type="incremental"))
    listed = by_key((await node.schedulers(key_prefix, BANK))["schedulers"])["every-400"]
    assert listed["iterationCount"] >= 6
    assert listed["next"] == ours.next_run_at or listed["next"] > (ours.next_run_at or 0)


async def test_a_node_cron_scheduler_advances_under_queuekit(
    qs: RedisQueueService, node: NodeRunner, key_prefix: str
) -> None:
    # Six fields, seconds first (cron-parser and croniter agree): every second.
    await node.schedulers(key_prefix, BANK, upsert=[{
        "id": "each-second", "repeat": {"pattern": "* * * * * *", "tz": "Europe/Berlin"},
        "template": {"name": "sync-transactions", "data": DATA},
    }])
    runs: list[str] = []

    async def sync(job: JobContext[BankSyncJobData]) -> JobResult:
        runs.append(job.id)
        return JobResult(success=True)

    qs.create_worker(BANK, sync)

    async def count() -> int:
        return len(runs)

    await eventually(count, lambda n: n >= 3, timeout=10)
    due = [int(job_id.rsplit(":", 1)[1]) for job_id in runs[:3]]
    assert all(ms % 1000 == 0 for ms in due)
    assert [b - a for a, b in itertools.pairwise(due)] == [1000, 1000]


async def test_a_queuekit_scheduler_is_listed_and_run_by_node(
    qs: RedisQueueService, node: NodeRunner, key_prefix: str
) -> None:
    every = await qs.upsert_job_scheduler(
        BANK, "qk-every", every=300, name="sync-transactions",
        data=BankSyncJobData(user_id="u-7", account_id="acct-7", sync_type="incremental"),
        options={"attempts": 2}, limit=50)
    cron = await qs.upsert_job_scheduler(
        BANK, "qk-nightly", pattern="0 3 * * *", tz="Europe/Berlin",
        name="nightly-sync", data=DATA)
    listed = by_key((await node.schedulers(key_prefix, BANK))["schedulers"])
    assert set(listed) == {"qk-every", "qk-nightly"}
    node_every, node_cron = listed["qk-every"], listed["qk-nightly"]
    assert (node_every["name"], node_every["every"], node_every["limit"],
            node_every["iterationCount"], node_every["next"]) == (
        "sync-transactions", 300, 50, every.iteration_count, every.next_run_at)
    assert node_every["template"]["data"] == DATA
    assert node_every["template"]["opts"]["attempts"] == 2
    assert (node_cron["name"], node_cron["pattern"], node_cron["tz"], node_cron["next"]) == (
        "nightly-sync", "0 3 * * *", "Europe/Berlin", cron.next_run_at)
    assert node_cron["template"]["data"] == DATA
    assert [s.id for s in await qs.get_job_schedulers(BANK)] == [
        s["key"] for s in (await node.schedulers(key_prefix, BANK))["schedulers"]]

    # A Node Worker runs the queuekit scheduler's runs and advances it.
    worker = await node.start("worker.mjs", prefix=key_prefix, queues=[BANK], expect=3)
    await worker.expect("ready")
    seen = [await worker.expect("job") for _ in range(3)]
    await worker.expect("done", timeout=20)
    assert all(m["id"].startswith("repeat:qk-every:") for m in seen)
    assert len({m["id"] for m in seen}) == 3
    assert all(m["name"] == "sync-transactions" and m["data"] == DATA for m in seen)
    # Each run carries its place in the series, as Node's own runs do (limit is checked
    # against repeat.count).
    assert sorted(m["opts"]["repeat"]["count"] for m in seen) == [1, 2, 3]
    assert all(m["opts"]["repeat"]["every"] == 300 and m["opts"]["repeat"]["limit"] == 50
               for m in seen)
    after = await qs.get_job_scheduler(BANK, "qk-every")
    assert after is not None and after.iteration_count >= 4

    # Removing with Node removes what queuekit wrote.
    answer = await node.schedulers(key_prefix, BANK, remove=["qk-every", "qk-nightly"])
    assert answer["removed"] == [True, True]
    assert await qs.get_job_schedulers(BANK) == []
