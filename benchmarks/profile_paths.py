"""The hot paths alone, for a profiler: ``python -m benchmarks.profile_paths MODE --redis-url URL``.

``add``: ``QueueService.add_job`` one at a time (awaited), ``--jobs`` times.
``worker``: ``--jobs`` jobs added in bulk first (not profiled: the profile starts at the
"go" line), then a no-op worker at ``--concurrency`` until the queue is drained.

Prints one JSON line: the seconds taken and Redis's ``INFO commandstats`` deltas per job
(calls and microseconds per command), so one run gives both sides of the cost. Run it
under ``py-spy record`` (see docs/profile.md) or with ``--cprofile FILE``.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import sys
import time
from collections.abc import Mapping
from typing import Any

import uvloop
from redis.asyncio import Redis

from queuekit import BankSyncJobData, JobContext, JobResult, RedisQueueService, load_settings

QUEUE = "bank-sync"


async def _stats(client: Redis) -> dict[str, tuple[int, int]]:
    info: Mapping[str, Any] = await client.info("commandstats")
    return {k.removeprefix("cmdstat_"): (int(v["calls"]), int(v["usec"]))
            for k, v in info.items() if k.startswith("cmdstat_")}


def _delta(before: dict[str, tuple[int, int]], after: dict[str, tuple[int, int]],
           jobs: int) -> dict[str, dict[str, float]]:
    out = {}
    for name, (calls, usec) in after.items():
        c0, u0 = before.get(name, (0, 0))
        if calls - c0 > 0 and name != "info":
            out[name] = {"calls_per_job": round((calls - c0) / jobs, 3),
                         "usec_per_job": round((usec - u0) / jobs, 2),
                         "usec_per_call": round((usec - u0) / (calls - c0), 2)}
    return dict(sorted(out.items(), key=lambda kv: -kv[1]["usec_per_job"]))


async def main(args: argparse.Namespace) -> dict[str, Any]:
    """Run one mode; the measurements as a dict."""
    settings = load_settings(redis={"url": args.redis_url, "prefix": f"prof{time.time_ns()}"})
    qs = await RedisQueueService.connect(settings)
    stats = Redis.from_url(args.redis_url, decode_responses=True)
    data = [BankSyncJobData(user_id=f"user-{i}", account_id=f"acct-{i}",
                            sync_type="incremental") for i in range(args.jobs)]
    profiler = cProfile.Profile() if args.cprofile else None
    try:
        if args.mode == "worker":
            for first in range(0, args.jobs, 1000):
                await qs.add_jobs(QUEUE, [("sync-transactions", d)
                                          for d in data[first:first + 1000]])
        else:
            await qs.add_job(QUEUE, "sync-transactions", data[0])  # warm-up: script load
        done = asyncio.Event()
        seen = 0

        async def process(job: JobContext[BankSyncJobData]) -> JobResult:
            nonlocal seen
            seen += 1
            if seen >= args.jobs:
                done.set()
            return JobResult(success=True)

        before = await _stats(stats)
        sys.stderr.write("go\n")
        if profiler is not None:
            profiler.enable()
        started, cpu = time.perf_counter(), time.process_time()
        if args.mode == "add":
            for d in data:
                await qs.add_job(QUEUE, "sync-transactions", d)
        else:
            qs.create_worker(QUEUE, process, concurrency=args.concurrency)
            await done.wait()
        seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
        if profiler is not None:
            profiler.disable()
            profiler.dump_stats(args.cprofile)
        after = await _stats(stats)
    finally:
        await qs.close()
        await stats.aclose()
    return {"mode": args.mode, "jobs": args.jobs, "seconds": round(seconds, 3),
            "jobs_per_s": round(args.jobs / seconds),
            "us_per_job": round(seconds / args.jobs * 1e6, 1),
            "client_cpu_us_per_job": round(cpu / args.jobs * 1e6, 1),
            "redis": _delta(before, after, args.jobs)}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("mode", choices=("add", "worker"))
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--cprofile", metavar="FILE",
                        help="also write a cProfile of the timed part")
    result = uvloop.run(main(parser.parse_args()))
    sys.stdout.write(json.dumps(result) + "\n")
