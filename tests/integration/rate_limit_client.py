"""A second process for the rate-limit test: N concurrent adds for one user.

Usage: python -m tests.integration.rate_limit_client URL PREFIX USER N GO_KEY
Waits for GO_KEY (so both processes start together), prints "accepted refused other".
"""

from __future__ import annotations

import asyncio
import sys

import redis.asyncio as aioredis

from queuekit import BankSyncJobData, QueueName, RateLimitExceededError, RedisQueueService
from queuekit.settings import load_settings


async def main(url: str, prefix: str, user: str, n: int, go_key: str) -> str:
    settings = load_settings(redis={"url": url, "prefix": prefix},
                             security={"rate_limits": {"bank-sync": {"max": 10,
                                                                     "duration": 60_000}}})
    qs = await RedisQueueService.connect(settings)
    payload = BankSyncJobData(user_id=user, account_id="a", sync_type="full")
    control = aioredis.from_url(url)
    try:
        await control.blpop([go_key], timeout=30)
        results = await asyncio.gather(
            *(qs.add_job(QueueName.BANK_SYNC, "sync", payload) for _ in range(n)),
            return_exceptions=True)
    finally:
        await control.aclose()
        await qs.close()
    refused = sum(isinstance(r, RateLimitExceededError) for r in results)
    other = sum(isinstance(r, BaseException) and not isinstance(r, RateLimitExceededError)
                for r in results)
    return f"{n - refused - other} {refused} {other}"


if __name__ == "__main__":
    url, prefix, user, n, go_key = sys.argv[1:6]
    sys.stdout.write(asyncio.run(main(url, prefix, user, int(n), go_key)) + "\n")
