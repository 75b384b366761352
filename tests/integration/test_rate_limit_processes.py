"""The per-user limit is counted atomically in Redis, across processes."""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from queuekit import BankSyncJobData, QueueName, RateLimitExceededError, RedisQueueService
from tests.conftest import SettingsFactory
from tests.support.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[2]


async def test_two_processes_share_one_limit_exactly(
    make_settings: SettingsFactory, redis_server: RedisServer, key_prefix: str
) -> None:
    settings = make_settings(
        security={"rate_limits": {"bank-sync": {"max": 10, "duration": 60_000}}})
    go_key = f"{key_prefix}:go"
    other = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "tests.integration.rate_limit_client", redis_server.url,
        key_prefix, "mallory", "50", go_key, cwd=ROOT, stdout=asyncio.subprocess.PIPE)
    qs = await RedisQueueService.connect(settings)
    try:
        payload = BankSyncJobData(user_id="mallory", account_id="a", sync_type="full")
        with redis_server.client() as client:
            client.rpush(go_key, "go")
            client.rpush(go_key, "go")  # one for the other process, one left over
        ours = await asyncio.gather(
            *(qs.add_job(QueueName.BANK_SYNC, "sync", payload) for _ in range(50)),
            return_exceptions=True)
        out, _ = await asyncio.wait_for(other.communicate(), timeout=60)
        theirs_accepted, theirs_refused, theirs_other = map(int, out.decode().split())
        ours_refused = [r for r in ours if isinstance(r, RateLimitExceededError)]
        ours_accepted = [r for r in ours if not isinstance(r, BaseException)]
        assert len(ours_accepted) + len(ours_refused) == 50
        assert theirs_other == 0
        assert len(ours_accepted) + theirs_accepted == 10
        assert len(ours_refused) + theirs_refused == 90
        assert all(r.retry_after > 0 for r in ours_refused)
        counts = await qs.get_job_counts(QueueName.BANK_SYNC)
        assert counts["waiting"] == 10
        # another user still gets in
        await qs.add_job(QueueName.BANK_SYNC, "sync",
                         BankSyncJobData(user_id="alice", account_id="a", sync_type="full"))
    finally:
        if other.returncode is None:
            other.kill()
            await other.wait()
        await qs.close()
