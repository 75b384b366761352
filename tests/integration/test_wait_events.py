"""``wait_for_job`` on Redis: one events reader per queue and process, woken by Node-format
events from any worker; a missed event costs one re-read interval, a Redis restart only a
reconnect."""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Iterator

import pytest

from queuekit import (
    BankSyncJobData,
    JobContext,
    JobResult,
    JobState,
    QueueName,
    QueueUnavailableError,
    RedisQueueService,
    waiting,
)
from queuekit.redis import waiters
from tests.conftest import SettingsFactory
from tests.support.events_reader import (
    blocked_readers,
    held_until_released,
    reader_connections,
)
from tests.support.redis_server import RedisServer
from tests.support.waiting import eventually

BANK = QueueName.BANK_SYNC
SYNC = BankSyncJobData(user_id="u1", account_id="a1", sync_type="incremental")


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
    release, held = held_until_released()
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


def count_first_looks(qs: RedisQueueService, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The job ids ``wait_for_job`` took a first look at (its state-only read)."""
    looked: list[str] = []
    first_look = qs._job_state

    async def counted(queue: str, job_id: str) -> JobState | None:
        looked.append(job_id)
        return await first_look(queue, job_id)

    monkeypatch.setattr(qs, "_job_state", counted)
    return looked


async def test_a_wait_for_a_job_added_here_needs_no_first_look(
    qs: RedisQueueService, make_settings: SettingsFactory, monkeypatch: pytest.MonkeyPatch,
) -> None:
    looked = count_first_looks(qs, monkeypatch)
    qs.create_worker(BANK, no_op)
    first = await qs.add_job(BANK, "sync-transactions", SYNC)
    # The reader starts with this wait, after the add: it may have missed the job's end.
    assert (await qs.wait_for_job(BANK, first.id, timeout=10)).state == JobState.COMPLETED
    assert looked == [first.id]
    # Added while the reader reads on: every event of the job is still to come.
    again = await qs.add_job(BANK, "sync-transactions", SYNC)
    bulk = await qs.add_jobs(BANK, [("sync-transactions", SYNC) for _ in range(3)])
    for job in [again, *bulk]:
        assert (await qs.wait_for_job(BANK, job.id, timeout=10)).state == JobState.COMPLETED
    assert looked == [first.id]
    # A custom id may name a job that finished long ago; another process's job was added
    # out of this reader's sight: both get their first look.
    custom = await qs.add_job(BANK, "sync-transactions", SYNC, {"job_id": "custom-1"})
    other = await RedisQueueService.connect(make_settings())
    try:
        elsewhere = await other.add_job(BANK, "sync-transactions", SYNC)
    finally:
        await other.close()
    for job in (custom, elsewhere):
        assert (await qs.wait_for_job(BANK, job.id, timeout=10)).state == JobState.COMPLETED
    assert looked == [first.id, custom.id, elsewhere.id]


async def test_a_job_that_finished_before_its_wait_began_is_found_at_once(
    qs: RedisQueueService, monkeypatch: pytest.MonkeyPatch,
) -> None:
    # No re-read within the wait's timeout: only the reader can find the job finished.
    monkeypatch.setattr(waiting, "WAIT_RECHECK", 60.0)
    qs.create_worker(BANK, no_op)
    first = await qs.add_job(BANK, "sync-transactions", SYNC)
    await qs.wait_for_job(BANK, first.id, timeout=10)  # the reader runs from here on
    reader = qs._waiters.reader(BANK)
    job = await qs.add_job(BANK, "sync-transactions", SYNC)
    # Its completion is read (with nobody waiting) before the wait subscribes.
    await eventually(lambda: asyncio.sleep(0, job.id in reader._finished), bool)
    info = await qs.wait_for_job(BANK, job.id, timeout=5)
    assert info.state == JobState.COMPLETED


async def test_a_gap_in_the_reading_brings_the_first_look_back(
    qs: RedisQueueService, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch,
) -> None:
    looked = count_first_looks(qs, monkeypatch)
    release, held = held_until_released()
    qs.create_worker(BANK, held)
    first = await qs.add_job(BANK, "sync-transactions", SYNC)
    first_wait = asyncio.ensure_future(qs.wait_for_job(BANK, first.id, timeout=20))
    reader = qs._waiters.reader(BANK)
    await eventually(lambda: asyncio.sleep(0, reader._live), bool)
    job = await qs.add_job(BANK, "sync-transactions", SYNC)
    assert job.id in reader._added  # added while the reader reads on
    (connection,) = await eventually(
        lambda: asyncio.sleep(0, reader_connections(redis_server)), bool)
    with redis_server.client() as client:
        client.client_kill_filter(_id=connection)
    # The reader notices, reconnects and reads on; what it remembered is gone.
    await eventually(lambda: asyncio.sleep(0, blocked_readers(redis_server)),
                     lambda n: n == 1, timeout=10)
    assert job.id not in reader._added
    second = asyncio.ensure_future(qs.wait_for_job(BANK, job.id, timeout=20))
    await eventually(lambda: asyncio.sleep(0, looked), lambda ids: job.id in ids)
    release.set()
    assert (await first_wait).state == JobState.COMPLETED
    assert (await second).state == JobState.COMPLETED
