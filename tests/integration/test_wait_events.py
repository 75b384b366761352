"""``wait_for_job`` on Redis: one events reader per queue and process, woken by Node-format
events from any worker; a missed event costs one re-read interval, a Redis restart only a
reconnect."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from queuekit import (
    BankSyncJobData,
    JobContext,
    JobResult,
    JobState,
    QueueName,
    QueueUnavailableError,
    RedisQueueService,
)
from queuekit.redis import waiters
from tests.conftest import SettingsFactory
from tests.support.redis_server import RedisServer
from tests.support.waiting import eventually

BANK = QueueName.BANK_SYNC
SYNC = BankSyncJobData(user_id="u1", account_id="a1", sync_type="incremental")


def blocked_readers(server: RedisServer) -> int:
    """Connections blocked in XREAD right now (the events readers)."""
    with server.client() as client:
        listed: list[dict[str, Any]] = client.client_list()
    return sum(1 for c in listed if c.get("cmd") == "xread" and "b" in str(c.get("flags")))


@pytest.fixture
async def qs(make_settings: SettingsFactory) -> AsyncIterator[RedisQueueService]:
    service = await RedisQueueService.connect(make_settings())
    yield service
    await service.close()


async def no_op(job: JobContext[BankSyncJobData]) -> JobResult:
    return JobResult(success=True)


@pytest.fixture
def durable_redis() -> Iterator[RedisServer]:
    server = RedisServer(extra_args=("--appendonly", "yes", "--appendfsync", "always"))
    server.start()
    yield server
    server.cleanup()


async def test_many_waiters_share_one_reader_that_goes_idle_after(
    qs: RedisQueueService, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(waiters, "BLOCK_MS", 200)  # notice "nobody waits" quickly
    jobs = await qs.add_jobs(BANK, [("sync-transactions", SYNC) for _ in range(40)])
    waits = [asyncio.ensure_future(qs.wait_for_job(BANK, job.id, timeout=20)) for job in jobs]
    before = await eventually(lambda: asyncio.sleep(0, blocked_readers(redis_server)),
                              lambda n: n >= 1)
    qs.create_worker(BANK, no_op, concurrency=10)
    infos = await asyncio.gather(*waits)

    assert {info.state for info in infos} == {JobState.COMPLETED}
    # Other tests' readers may share this server, but 40 waiters add one reader, not 40.
    assert before <= 2, before
    # With nobody waiting the reader stops blocking (its connection stays open for later).
    await eventually(lambda: asyncio.sleep(0, blocked_readers(redis_server)),
                     lambda n: n < before, timeout=5)
    again = await qs.add_job(BANK, "sync-transactions", SYNC)
    assert (await qs.wait_for_job(BANK, again.id, timeout=10)).state == JobState.COMPLETED


async def test_one_wait_after_another_keeps_one_reader(qs: RedisQueueService) -> None:
    # A caller that adds a job and waits for it, again and again, must not restart the
    # reader per job (each restart costs a round trip before the wait can begin).
    qs.create_worker(BANK, no_op)
    reader = qs._waiters.reader(BANK)
    tasks = set()
    for _ in range(5):
        job = await qs.add_job(BANK, "sync-transactions", SYNC)
        assert (await qs.wait_for_job(BANK, job.id, timeout=10)).state == JobState.COMPLETED
        tasks.add(reader._task)
    assert len(tasks) == 1 and None not in tasks


async def test_a_missed_event_costs_one_recheck_not_the_result(
    qs: RedisQueueService, monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(waiters, "FINAL_EVENTS", frozenset())  # the reader wakes no one
    release = asyncio.Event()

    async def held(job: JobContext[BankSyncJobData]) -> JobResult:
        await release.wait()
        return JobResult(success=True)

    qs.create_worker(BANK, held)
    job = await qs.add_job(BANK, "sync-transactions", SYNC)
    waiting = asyncio.ensure_future(qs.wait_for_job(BANK, job.id, timeout=10))
    await eventually(lambda: qs.get_job(BANK, job.id),
                     lambda info: info is not None and info.state == JobState.ACTIVE)
    release.set()
    started = time.monotonic()
    info = await waiting

    assert info.state == JobState.COMPLETED
    # Found by the once-a-second re-read (2.5 s: room for a loaded machine).
    assert time.monotonic() - started < 2.5


async def test_waiters_survive_a_redis_restart(
    durable_redis: RedisServer, make_settings: SettingsFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="queuekit.redis.waiters")
    settings = make_settings(redis={"url": durable_redis.url},
                             breaker={"fail_max": 1000, "reset_timeout": 0.1})
    qs = await RedisQueueService.connect(settings)
    try:
        job = await qs.add_job(BANK, "sync-transactions", SYNC)  # no worker yet
        waiting = asyncio.ensure_future(qs.wait_for_job(BANK, job.id, timeout=30))
        await eventually(lambda: asyncio.sleep(0, blocked_readers(durable_redis)),
                         lambda n: n == 1)
        durable_redis.stop(signal.SIGKILL)

        async def reader_errors() -> int:
            return sum("events reader of" in r.getMessage() for r in caplog.records)

        # Down for longer than redis-py's own retries: the reader sees the error itself.
        await eventually(reader_errors, lambda n: n >= 1, timeout=10)
        durable_redis.start()
        # The waiter's re-read may meet Redis down: QueueUnavailableError is wait_for_job's
        # contract then, so a caller retries. Here the restart is fast enough that it
        # usually keeps waiting; accept either and wait again.
        await eventually(lambda: asyncio.sleep(0, blocked_readers(durable_redis)),
                         lambda n: n == 1, timeout=10)  # the reader reconnected
        qs.create_worker(BANK, no_op)
        try:
            info = await waiting
        except QueueUnavailableError:
            info = await qs.wait_for_job(BANK, job.id, timeout=20)
        assert info.state == JobState.COMPLETED
        # After the reconnect a wait is woken by the event again, not by the re-read.
        # The pool's connections from before the restart fail once each (the documented
        # QueueUnavailableError): an application retries the add.
        second = None
        for _ in range(20):
            try:
                second = await qs.add_job(BANK, "sync-transactions", SYNC)
                break
            except QueueUnavailableError:
                continue
        assert second is not None
        started = time.monotonic()
        assert (await qs.wait_for_job(BANK, second.id, timeout=10)).state == JobState.COMPLETED
        assert time.monotonic() - started < 0.9
    finally:
        await qs.close()
