"""``queuekit stats / jobs / retry / health`` against a real Redis with known contents."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from containers.cli import main
from queuekit import (
    JobContext,
    JobOptions,
    JobResult,
    RedisQueueService,
    UnrecoverableError,
)
from tests.support.cli import cli
from tests.support.configs import SAMPLE_PLUGIN, write_config
from tests.support.redis_server import RedisServer
from tests.support.sample_plugin import SAMPLE_QUEUE, SampleJobData
from tests.support.waiting import eventually


async def fill(qs: RedisQueueService) -> list[str]:
    """1 completed, 2 failed, 2 waiting, 1 delayed, 1 prioritized; returns the failed ids."""
    async def process(job: JobContext[SampleJobData]) -> JobResult:
        if job.data.fail:
            raise UnrecoverableError(f"number {job.data.number} refused")
        return JobResult(success=True)

    done = [await qs.add_job(SAMPLE_QUEUE, "multiply",
                             {"userId": "u", "number": n, "fail": n > 1}) for n in (1, 2, 3)]
    worker = qs.create_worker(SAMPLE_QUEUE, process, concurrency=1)
    for job in done:
        await qs.wait_for_job(SAMPLE_QUEUE, job.id, timeout=10)
    await worker.close()
    for n in (4, 5):
        await qs.add_job(SAMPLE_QUEUE, "multiply", {"userId": "u", "number": n})
    await qs.add_job(SAMPLE_QUEUE, "multiply", {"userId": "u", "number": 6},
                     JobOptions(delay=600_000))
    await qs.add_job(SAMPLE_QUEUE, "multiply", {"userId": "u", "number": 7},
                     JobOptions(priority=3))
    return [done[1].id, done[2].id]


async def test_stats_jobs_and_retry(qs: RedisQueueService, config: str,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    failed_ids = await fill(qs)

    code, out, _ = await cli(capsys, "stats", "--json", "--config", config)
    assert code == 0
    stats = json.loads(out)
    assert stats[SAMPLE_QUEUE] == {"waiting": 2, "active": 0, "delayed": 1, "prioritized": 1,
                                   "completed": 1, "failed": 2, "paused": 0,
                                   "waiting-children": 0}
    assert set(stats) >= {"bank-sync", "notifications", "reports", "analytics", SAMPLE_QUEUE}
    assert stats["bank-sync"]["waiting"] == 0

    code, out, _ = await cli(capsys, "stats", SAMPLE_QUEUE, "--config", config)
    header, rule, row = out.splitlines()
    assert header.split() == ["queue", "waiting", "active", "delayed", "prioritized",
                              "completed", "failed", "paused"]
    assert set(rule) <= {"-", " "}
    assert row.split() == [SAMPLE_QUEUE, "2", "0", "1", "1", "1", "2", "0"]

    code, out, _ = await cli(capsys, "stats", SAMPLE_QUEUE, "--watch", "--count", "2",
                             "--interval", "0.01", "--json", "--config", config)
    assert [json.loads(line)[SAMPLE_QUEUE]["failed"] for line in out.splitlines()] == [2, 2]

    code, out, _ = await cli(capsys, "jobs", SAMPLE_QUEUE, "--state", "failed", "--limit",
                             "1", "--config", config)
    assert code == 0
    lines = out.splitlines()
    assert lines[0].split() == ["id", "name", "attempts", "failed", "reason", "age"]
    assert len(lines) == 3  # header, rule, the newest failed job only
    assert lines[2].split()[:3] == [failed_ids[1], "multiply", "1/3"]
    assert "number 3 refused" in lines[2]

    code, out, _ = await cli(capsys, "jobs", SAMPLE_QUEUE, "--json", "--config", config)
    listed = json.loads(out)
    assert [j["id"] for j in listed] == failed_ids[::-1]
    assert listed[0]["failed_reason"] == "number 3 refused"
    assert listed[0]["attempts_made"] == 1
    assert 0 <= listed[0]["age_seconds"] < 60

    code, out, _ = await cli(capsys, "retry", SAMPLE_QUEUE, "--config", config)
    assert code == 0
    assert out.strip() == f"2 failed job(s) of {SAMPLE_QUEUE} moved back to waiting"
    counts = await qs.get_job_counts(SAMPLE_QUEUE)
    assert (counts["failed"], counts["waiting"]) == (0, 4)
    code, out, _ = await cli(capsys, "jobs", SAMPLE_QUEUE, "--config", config)
    assert out.strip() == f"no failed jobs on {SAMPLE_QUEUE}"


async def test_health_needs_the_configured_workers(
    qs: RedisQueueService, config: str, capsys: pytest.CaptureFixture[str],
) -> None:
    code, out, _ = await cli(capsys, "health", "--config", config)
    assert code == 1
    assert out.strip() == f"unhealthy: no worker is running for queue '{SAMPLE_QUEUE}'"

    async def process(job: JobContext[SampleJobData]) -> JobResult:
        return JobResult(success=True)

    worker = qs.create_worker(SAMPLE_QUEUE, process)
    await eventually(lambda: qs.count_workers(SAMPLE_QUEUE), lambda n: n == 1)
    code, out, _ = await cli(capsys, "health", "--config", config)
    assert code == 0
    assert out.strip() == ("ok: redis store answers, circuit breaker closed, "
                           f"workers running for: {SAMPLE_QUEUE}")
    code, out, _ = await cli(capsys, "health", "--json", "--queues",
                             f"{SAMPLE_QUEUE},notifications", "--config", config)
    assert code == 1
    report = json.loads(out)
    assert report["workers"] == {SAMPLE_QUEUE: True, "notifications": False}
    assert report["reasons"] == ["no worker is running for queue 'notifications'"]
    await worker.close()


async def test_health_with_workers_disabled_needs_only_redis(
    tmp_path: Path, redis_server: RedisServer, key_prefix: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    api = write_config(tmp_path / "api.yaml", redis_server.url, key_prefix, [SAMPLE_PLUGIN],
                       worker={"enabled": False})
    code, out, _ = await cli(capsys, "health", "--config", str(api))
    assert code == 0
    assert out.startswith("ok: redis store answers, circuit breaker closed")


def test_health_exits_1_when_redis_is_stopped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    server = RedisServer().start()
    try:
        config = write_config(tmp_path / "c.yaml", server.url, "down", [SAMPLE_PLUGIN],
                              worker={"enabled": False})
        assert main(["health", "--config", str(config)]) == 0
        capsys.readouterr()
        server.stop()
        assert main(["health", "--config", str(config)]) == 1
        out = capsys.readouterr().out
        assert out.startswith(f"unhealthy: cannot connect to Redis at {server.url}")
        assert main(["health", "--json", "--config", str(config)]) == 1
        report = json.loads(capsys.readouterr().out)
        assert report["ok"] is False
        assert report["reasons"][0].startswith(f"cannot connect to Redis at {server.url}")
    finally:
        server.cleanup()
