"""A bulk add whose script the server lost is sent again whole: all of it is added,
once (the write goes out before the lost script is known: see AddJobCommand.start_many);
the records the adds return are those Redis stores; a script the server loses again
right after its load (a restart in between) is loaded again."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from queuekit import BankSyncJobData, JobState, JobTimeoutError, QueueName, RedisQueueService
from tests.conftest import SettingsFactory
from tests.support.redis_server import RedisServer

BANK = QueueName.BANK_SYNC


def _sync(index: int) -> BankSyncJobData:
    return BankSyncJobData(user_id=f"u{index}", account_id=f"a{index}", sync_type="full")


async def test_a_bulk_add_after_the_server_lost_its_scripts_is_sent_again_whole(
        make_settings: SettingsFactory, redis_server: RedisServer) -> None:
    qs = await RedisQueueService.connect(make_settings())
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


async def test_waiting_survives_a_restart_between_loading_the_state_script_and_running_it(
        make_settings: SettingsFactory, redis_server: RedisServer,
        monkeypatch: pytest.MonkeyPatch) -> None:
    # wait_for_job's first look runs the state script; a Redis restarted right after its
    # load (seen in CI: the look straddled a kill) lost it again: it is loaded again.
    qs = await RedisQueueService.connect(make_settings())
    try:
        job = await qs.add_job(BANK, "sync", _sync(0))
        load = Redis.script_load  # whichever client loads it (redis-py's or ours)
        restarts = iter([True])

        async def load_then_restart(client: Redis, text: str | bytes) -> str:
            sha = await load(client, text)
            if next(restarts, False):
                with redis_server.client() as sync_client:
                    sync_client.script_flush()
            return str(sha)

        monkeypatch.setattr(Redis, "script_load", load_then_restart)
        with redis_server.client() as sync_client:
            sync_client.script_flush()
        with pytest.raises(JobTimeoutError):  # no worker: the look itself must not fail
            await qs.wait_for_job(BANK, job.id, timeout=0.05)
        assert next(restarts, None) is None  # the look went through the lost load
    finally:
        await qs.close()
