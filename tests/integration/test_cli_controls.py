"""``queuekit pause / resume / clean / remove`` against a real Redis."""

from __future__ import annotations

import asyncio

import pytest

from queuekit import (
    JobContext,
    JobResult,
    RedisQueueService,
    UnrecoverableError,
)
from tests.support.cli import cli
from tests.support.sample_plugin import SAMPLE_QUEUE, SampleJobData
from tests.support.waiting import eventually


async def test_pause_resume_clean_and_remove(qs: RedisQueueService, config: str,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = await cli(capsys, "pause", SAMPLE_QUEUE, "--config", config)
    assert code == 0 and "paused" in out
    assert await qs.is_paused(SAMPLE_QUEUE)

    async def process(job: JobContext[SampleJobData]) -> JobResult:
        if job.data.fail:
            raise UnrecoverableError("refused")
        return JobResult(success=True)

    qs.create_worker(SAMPLE_QUEUE, process)
    jobs = [await qs.add_job(SAMPLE_QUEUE, "multiply",
                             {"userId": "u", "number": n, "fail": n > 1}) for n in (1, 2, 3)]
    await asyncio.sleep(0.3)  # paused: nothing may start meanwhile
    assert (await qs.get_job_counts(SAMPLE_QUEUE))["waiting"] == 3

    code, out, _ = await cli(capsys, "resume", SAMPLE_QUEUE, "--config", config)
    assert code == 0 and out.strip() == f"queue {SAMPLE_QUEUE} resumed"
    for job in jobs:
        await qs.wait_for_job(SAMPLE_QUEUE, job.id, timeout=10)

    code, out, _ = await cli(capsys, "clean", SAMPLE_QUEUE, "--state", "failed",
                             "--older-than", "1h", "--config", config)
    assert code == 0 and out.strip() == f"0 failed job(s) removed from {SAMPLE_QUEUE}"
    code, out, _ = await cli(capsys, "clean", SAMPLE_QUEUE, "--state", "failed", "--limit",
                             "1", "--config", config)
    assert out.strip() == f"1 failed job(s) removed from {SAMPLE_QUEUE}"
    assert (await qs.get_job_counts(SAMPLE_QUEUE))["failed"] == 1

    code, out, _ = await cli(capsys, "remove", SAMPLE_QUEUE, jobs[0].id, "--config", config)
    assert code == 0 and out.strip() == f"job {jobs[0].id} removed from {SAMPLE_QUEUE}"
    code, out, _ = await cli(capsys, "remove", SAMPLE_QUEUE, jobs[0].id, "--config", config)
    assert code == 1 and out.strip() == f"no job {jobs[0].id} on {SAMPLE_QUEUE}"
    assert (await qs.get_job_counts(SAMPLE_QUEUE))["completed"] == 0


async def test_remove_refuses_an_active_job(qs: RedisQueueService, config: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    release = asyncio.Event()

    async def slow(job: JobContext[SampleJobData]) -> JobResult:
        await release.wait()
        return JobResult(success=True)

    qs.create_worker(SAMPLE_QUEUE, slow)
    job = await qs.add_job(SAMPLE_QUEUE, "multiply", {"userId": "u", "number": 1})
    await eventually(lambda: qs.get_job_counts(SAMPLE_QUEUE), lambda c: c["active"] == 1)
    code, _, err = await cli(capsys, "remove", SAMPLE_QUEUE, job.id, "--config", config)
    assert code == 2
    assert "is active" in err
    release.set()
    await qs.wait_for_job(SAMPLE_QUEUE, job.id, timeout=10)


@pytest.mark.parametrize("args", [
    ["clean", SAMPLE_QUEUE, "--state", "bogus"],
    ["clean", SAMPLE_QUEUE, "--older-than", "soon"],
    ["clean", SAMPLE_QUEUE, "--limit", "-1"],
])
async def test_bad_input_exits_2_and_writes_nothing(
    qs: RedisQueueService, config: str, key_prefix: str, args: list[str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    await qs.add_job(SAMPLE_QUEUE, "multiply", {"userId": "u", "number": 1})
    client = qs.connection.client
    before = sorted([key async for key in client.scan_iter(match=f"{key_prefix}:*")])
    with pytest.raises(SystemExit) as exit_info:
        await cli(capsys, *args, "--config", config)
    assert exit_info.value.code == 2
    assert args[2] in capsys.readouterr().err  # the option is named
    assert sorted([key async for key in client.scan_iter(match=f"{key_prefix}:*")]) == before
