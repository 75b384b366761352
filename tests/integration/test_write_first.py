"""An add's write goes out before its reply is awaited (what the caller does meanwhile
overlaps Redis's work on the script), and a bulk add whose script the server lost is
sent again whole: all of it is added, once."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from queuekit import BankSyncJobData, JobState, QueueName, RedisQueueService
from queuekit.redis.pipeline import AutoPipeline
from tests.support.redis_server import RedisServer
from tests.support.waiting import eventually

BANK = QueueName.BANK_SYNC


def _sync(index: int) -> BankSyncJobData:
    return BankSyncJobData(user_id=f"u{index}", account_id=f"a{index}", sync_type="full")


@pytest.fixture
async def client(redis_server: RedisServer) -> AsyncIterator[Redis]:
    found = Redis.from_url(redis_server.url, decode_responses=True)
    yield found
    await found.aclose()


async def test_a_sent_command_runs_before_its_reply_is_awaited(client: Redis,
                                                               key_prefix: str) -> None:
    pipe = AutoPipeline(client)
    await pipe.execute_command("PING")  # opens the link
    (link,) = pipe._idle
    key = f"{key_prefix}:sent"
    pending = pipe.send("SET", key, "v")
    # Another connection sees the value while the reply is still unread.
    assert await eventually(lambda: client.get(key), lambda value: value == "v") == "v"
    assert not pipe._idle  # the link is the pending reply's until it is awaited
    assert await pending == "OK"
    assert pipe._idle == [link]

    # A transaction too: written at once, its replies when awaited.
    started = pipe.start_transaction([("INCR", f"{key}:n"), ("GET", key)])
    assert await eventually(lambda: client.get(f"{key}:n"), lambda n: n == "1") == "1"
    assert await started == [1, "v"]
    assert pipe._idle == [link]
    await pipe.aclose()


async def test_commands_sent_while_one_is_pending_still_get_their_own_replies(
        client: Redis, key_prefix: str) -> None:
    pipe = AutoPipeline(client)
    await pipe.execute_command("PING")
    key = f"{key_prefix}:n"
    pending = pipe.send("INCR", key)
    later = [await pipe.execute_command("INCR", key) for _ in range(3)]  # batched meanwhile
    first = await pending
    assert sorted([first, *later]) == [1, 2, 3, 4]
    await pipe.aclose()


async def test_a_bulk_add_after_the_server_lost_its_scripts_is_sent_again_whole(
        make_settings: object, redis_server: RedisServer) -> None:
    qs = await RedisQueueService.connect(make_settings())  # type: ignore[operator]
    try:
        await qs.add_jobs(BANK, [("sync", _sync(0))])  # the scripts are known
        with redis_server.client() as sync_client:
            sync_client.script_flush()  # what a restarted Redis forgets
        added = await qs.add_jobs(BANK, [("sync", _sync(i)) for i in range(1, 4)])
        assert len({job.id for job in added}) == 3
        assert await qs.get_job_counts(BANK) == {**await qs.get_job_counts(BANK),
                                                  "waiting": 4}
        for job in added:
            stored = await qs.get_job(BANK, job.id)
            assert stored is not None and stored.state == JobState.WAITING
            assert stored.data == job.data and stored.created_at == job.created_at
        # Two scripts in one bulk (a delayed job beside waiting ones): checked first.
        with redis_server.client() as sync_client:
            sync_client.script_flush()
        mixed = await qs.add_jobs(BANK, [("sync", _sync(5)),
                                         ("sync", _sync(6), {"delay": 60_000})])
        assert [job.state for job in mixed] == [JobState.WAITING, JobState.DELAYED]
        counts = await qs.get_job_counts(BANK)
        assert (counts["waiting"], counts["delayed"]) == (5, 1)
        # A lone add meets the same: loaded again, added once.
        with redis_server.client() as sync_client:
            sync_client.script_flush()
        lone = await qs.add_job(BANK, "sync", _sync(7))
        assert (await qs.get_job_counts(BANK))["waiting"] == 6
        assert (await qs.get_job(BANK, lone.id)) is not None
    finally:
        await qs.close()
