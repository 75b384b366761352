"""``wait_for_job``'s final read in the events reader's round trip
(``queuekit.redis.final_reads``): a waited job comes back with its final event, equal to
what ``get_job`` reads then; where the script cannot answer (the job removed on
completion, a restarted Redis that lost the script, a server that refuses it) the wait
reads the job itself, as before."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from queuekit import (
    BankSyncJobData,
    JobContext,
    JobNotFoundError,
    JobResult,
    JobState,
    QueueName,
    RedisQueueService,
    UnrecoverableError,
)
from queuekit.records import RawJob
from queuekit.redis import final_reads
from tests.support.events_reader import held_until_released, reader_connections
from tests.support.redis_server import RedisServer
from tests.support.waiting import eventually

BANK = QueueName.BANK_SYNC
SYNC = BankSyncJobData(user_id="u1", account_id="a1", sync_type="incremental")


def count_reads(qs: RedisQueueService, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The job ids read through ``get_job``'s own read from now on."""
    read: list[str] = []
    own = qs._get_raw_job

    async def counted(queue: str, job_id: str) -> RawJob | None:
        read.append(job_id)
        return await own(queue, job_id)

    monkeypatch.setattr(qs, "_get_raw_job", counted)
    return read


async def wait_behind_a_fresh_xread(qs: RedisQueueService, server: RedisServer,
                                    options: dict[str, Any] | None = None,
                                    ) -> tuple[str, asyncio.Future[Any], asyncio.Event]:
    """A held job, waited for, and the reader blocked in an XREAD sent after the wait
    began (so the XREAD carries the job's final read): returns the job id, the wait and
    the event that lets the job finish."""
    release, held = held_until_released()
    qs.create_worker(BANK, held)
    job = await qs.add_job(BANK, "sync-transactions", SYNC, options)
    waiting = asyncio.ensure_future(qs.wait_for_job(BANK, job.id, timeout=20))
    reader = qs._waiters.reader(BANK)
    await eventually(lambda: asyncio.sleep(0, job.id in reader._watches), bool)
    await eventually(lambda: qs.get_job(BANK, job.id),
                     lambda info: info is not None and info.state == JobState.ACTIVE)
    # Another add's events answer the XREAD in flight; the one that follows is sent with
    # the wait known, and Redis had answered the old one before this add's reply.
    await qs.add_job(BANK, "sync-transactions", SYNC)
    await eventually(lambda: asyncio.sleep(0, reader_connections(server)), bool)
    return job.id, waiting, release


async def test_a_finished_job_comes_back_with_its_event(
    qs: RedisQueueService, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch,
) -> None:
    job_id, waiting, release = await wait_behind_a_fresh_xread(qs, redis_server)
    read = count_reads(qs, monkeypatch)
    release.set()
    info = await waiting

    assert read == []  # nothing read after the event: the XREAD's script read it
    assert info.state == JobState.COMPLETED and info.finished_at is not None
    assert info.return_value == JobResult(success=True)
    assert info == await qs.get_job(BANK, job_id)  # exactly what get_job reads


async def test_a_job_failed_for_good_comes_back_with_its_reason_and_stack(
    qs: RedisQueueService, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def refuse(job: JobContext[BankSyncJobData]) -> JobResult:
        raise UnrecoverableError("account closed")

    job = await qs.add_job(BANK, "sync-transactions", SYNC)
    waiting = asyncio.ensure_future(qs.wait_for_job(BANK, job.id, timeout=20))
    reader = qs._waiters.reader(BANK)
    await eventually(lambda: asyncio.sleep(0, job.id in reader._watches), bool)
    await qs.add_job(BANK, "other", SYNC)  # a fresh XREAD, sent with the wait known
    await eventually(lambda: asyncio.sleep(0, reader_connections(redis_server)), bool)
    read = count_reads(qs, monkeypatch)
    qs.create_worker(BANK, refuse)
    info = await waiting

    assert read == []
    assert info.state == JobState.FAILED and info.failed_reason == "account closed"
    assert info.stacktrace and "account closed" in info.stacktrace[-1]
    assert info == await qs.get_job(BANK, job.id)


async def test_a_job_removed_on_completion_is_read_by_the_wait_itself(
    qs: RedisQueueService, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch,
) -> None:
    job_id, waiting, release = await wait_behind_a_fresh_xread(
        qs, redis_server, {"remove_on_complete": True})
    read = count_reads(qs, monkeypatch)
    release.set()
    with pytest.raises(JobNotFoundError):
        await waiting
    assert read == [job_id]  # the script found it in no finished set: the wait read


async def test_a_lost_script_is_loaded_again_and_the_wait_still_ends(
    qs: RedisQueueService, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch,
) -> None:
    job_id, waiting, release = await wait_behind_a_fresh_xread(qs, redis_server)
    with redis_server.client() as client:
        client.script_flush()  # what a restarted Redis forgets
    # The XREAD in flight was sent before the flush: let events answer it, and the next.
    await qs.add_job(BANK, "sync-transactions", SYNC)
    read = count_reads(qs, monkeypatch)
    release.set()
    assert (await waiting).state == JobState.COMPLETED
    final = qs._waiters.reader(BANK)._reads
    assert final is not None and final.enabled
    # Whichever XREAD met the NOSCRIPT, the script is loaded again for the next waits.
    again = await qs.add_job(BANK, "sync-transactions", SYNC)
    assert (await qs.wait_for_job(BANK, again.id, timeout=10)).state == JobState.COMPLETED
    with redis_server.client() as client:
        assert client.script_exists(final_reads.SHA) == [True]
    assert set(read) <= {job_id, again.id}


async def test_a_server_that_refuses_the_script_leaves_the_reads_to_the_waits(
    qs: RedisQueueService, redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch,
) -> None:
    refused = "return redis.error_reply('ERR no final reads here')"
    monkeypatch.setattr(final_reads, "SCRIPT", refused)
    with redis_server.client() as client:
        monkeypatch.setattr(final_reads, "SHA", client.script_load(refused))
    job_id, waiting, release = await wait_behind_a_fresh_xread(qs, redis_server)
    read = count_reads(qs, monkeypatch)
    release.set()
    assert (await waiting).state == JobState.COMPLETED
    final = qs._waiters.reader(BANK)._reads
    assert final is not None and not final.enabled  # refused once: not sent again
    assert read == [job_id]
