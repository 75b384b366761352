"""A master failover under load: processing resumes, every replicated job finishes, and
adds sent while the master is dead (plain, deduplicated, a flow) wait out the failover.

The master serving the queue's slot is killed with SIGKILL while a worker runs jobs and a
producer keeps adding; its replica takes over after ``cluster-node-timeout`` (1 s here).
Jobs added before the kill were replicated first (``WAIT``): Redis replication is
asynchronous, and a write the replica never received is lost with the master (README).
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from queuekit import (
    BankSyncJobData,
    Deduplication,
    FlowJob,
    JobContext,
    JobOptions,
    JobResult,
    QueueName,
    QueueService,
)
from queuekit.errors import QueueUnavailableError
from tests.support.redis_cluster import RedisClusterServers
from tests.support.waiting import eventually

log = logging.getLogger(__name__)
BANK = QueueName.BANK_SYNC
BEFORE = 200
#: How soon after the kill jobs must start again: the 1 s node timeout, the election and
#: the clients' retry (0.2 s steps), with room for a loaded 2-core machine.
RESUME_WITHIN = 10.0


@pytest.fixture(params=["redis", "redis-bullmq"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _replicate(cluster: RedisClusterServers, tag: str) -> None:
    """Make sure the master of ``tag`` has sent every write so far to its replica."""
    master = cluster.master_of(tag)
    client = master.client()
    try:
        # WAIT covers this connection's writes, hence the probe write (same slot) first.
        client.set(f"{tag}:qk:probe", "1")
        assert int(client.wait(1, 5000)) >= 1
    finally:
        client.close()


async def test_master_failover_under_load(
        redis_cluster: RedisClusterServers, key_prefix: str,
        service_factory: Callable[..., Awaitable[QueueService]]) -> None:
    # Short locks: a completion the dead master never replicated leaves the job active
    # on the new master until the stalled check moves it back. Every job is kept.
    service = await service_factory(worker={"lock_duration": 2000, "stalled_interval": 1000},
                                    jobs={"remove_on_complete": {"count": 100_000}})
    started: dict[str, float] = {}
    busy, long_started = asyncio.Event(), asyncio.Event()

    async def work(job: JobContext[Any]) -> JobResult:
        if job.name == "long":  # runs until cancelled
            long_started.set()
            await asyncio.sleep(60)
        started.setdefault(job.id, time.monotonic())
        if len(started) >= 20:
            busy.set()
        await asyncio.sleep(0.02)
        return JobResult(success=True)

    payload = BankSyncJobData(user_id="u1", account_id="a1", sync_type="incremental")
    before = [job.id for job in await asyncio.gather(
        *(service.add_job(BANK, "sync", payload) for _ in range(BEFORE)))]
    tag = f"{{{key_prefix}:{BANK}}}"
    _replicate(redis_cluster, tag)
    victim = redis_cluster.master_of(tag)
    service.create_worker(BANK, work, concurrency=5)
    await asyncio.wait_for(busy.wait(), 30)  # under load: busy when the master dies

    after: list[str] = []
    refused: list[QueueUnavailableError] = []
    stop = asyncio.Event()

    async def produce() -> None:
        while not stop.is_set():
            try:
                after.append((await service.add_job(BANK, "sync", payload,
                                                    options={"job_id": uuid.uuid4().hex})).id)
            except QueueUnavailableError as exc:
                refused.append(exc)  # not acknowledged: not expected to exist
            await asyncio.sleep(0.05)

    producer = asyncio.ensure_future(produce())
    killed_at = time.monotonic()
    seen_before_kill = set(started)
    victim.stop(signal.SIGKILL)
    # A deduplicated add and a flow (each a MULTI/EXEC, not a plain command) sent while
    # the master is dead wait out the failover as plain adds do.
    dedup_id = uuid.uuid4().hex
    deduplicated = asyncio.ensure_future(service.add_job(
        BANK, "sync", payload, options=JobOptions(deduplication=Deduplication(id=dedup_id))))
    flow = asyncio.ensure_future(service.add_flow(FlowJob(
        BANK, "sync", payload, children=[FlowJob(BANK, "sync", payload)])))
    try:
        async def resumed() -> float:
            while True:
                fresh = [t for i, t in started.items() if i not in seen_before_kill]
                if fresh:
                    return min(fresh) - killed_at
                await asyncio.sleep(0.05)

        # Only jobs fetched from Redis after the kill are "fresh": the new master answered.
        resume = await asyncio.wait_for(resumed(), timeout=30)
        log.info("processing resumed %.2f s after the kill", resume)
        assert resume < RESUME_WITHIN, f"processing resumed {resume:.1f} s after the kill"
        await asyncio.sleep(1.0)  # let the producer add through the new master too
        stop.set()
        await producer
        for job_id in before + after:
            info = await service.wait_for_job(BANK, job_id, timeout=60)
            assert info.state == "completed", (job_id, info.state, info.failed_reason)
        assert after, f"the producer added nothing after the failover: {refused[-1:]}"
        first = await deduplicated
        again = await service.add_job(BANK, "sync", payload, options=JobOptions(
            deduplication=Deduplication(id=dedup_id)))
        # The same id while the job is unfinished (simple mode), else a new job.
        done = await service.get_job(BANK, first.id)
        assert again.id == first.id or (done is not None and done.state == "completed")
        assert (await service.wait_for_job(BANK, first.id, timeout=60)).state == "completed"
        parent = (await flow).job
        assert (await service.wait_for_job(BANK, parent.id, timeout=60)).state == "completed"
        # cancel_job still reaches the worker: its subscription moved off the dead node.
        long = await service.add_job(BANK, "long", payload)
        await asyncio.wait_for(long_started.wait(), 15)
        await eventually(lambda: service.get_job(BANK, long.id),
                         lambda i: i is not None and i.state == "active")
        assert await eventually(lambda: service.cancel_job(BANK, long.id), bool, timeout=10)
        cancelled = await service.wait_for_job(BANK, long.id, timeout=10)
        assert (cancelled.state, cancelled.failed_reason) == ("failed", "cancelled")
        # cluster_failover_wait (5 s) outlasts the election: adds waited, none failed.
        assert not refused, refused
    finally:
        stop.set()
        await asyncio.gather(producer, deduplicated, flow, return_exceptions=True)
        victim.start()  # it rejoins as a replica of the promoted master
        redis_cluster.wait_ok(30)
