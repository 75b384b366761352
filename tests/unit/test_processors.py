"""Processor classes (``WorkerHost``), their hooks, and observers, on the in-memory twin."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from queuekit import (
    BankSyncJobData,
    ConfigurationError,
    JobContext,
    JobResult,
    JobState,
    QueueName,
    UnrecoverableError,
)
from queuekit.jobs import Progress
from queuekit.processors import (
    FunctionProcessor,
    JobStateLogger,
    ProcessorResult,
    WorkerHost,
    observe,
    processor,
    queue_of,
)
from queuekit.testing import InMemoryQueueService

BANK = QueueName.BANK_SYNC
FAST_RETRY = {"backoff": {"type": "fixed", "delay": 10}}


def sync(account: str) -> BankSyncJobData:
    return BankSyncJobData(user_id="u1", account_id=account, sync_type="incremental")


@processor(BANK, concurrency=3)
class RecordingProcessor(WorkerHost[BankSyncJobData]):
    """Fails the first attempt of ``flaky`` accounts; records every hook call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any]] = []

    async def process(self, job: JobContext[BankSyncJobData]) -> JobResult:
        if job.data.account_id == "flaky" and job.attempts_made == 0:
            raise ConnectionError("bank timeout")
        if job.data.account_id == "closed":
            raise UnrecoverableError("account closed")
        await job.update_progress(40)
        await job.update_progress({"page": 2})
        await job.log("synced")
        return JobResult(success=True, message=job.data.account_id)

    async def on_completed(self, job: JobContext[BankSyncJobData],
                           result: ProcessorResult) -> None:
        self.calls.append(("completed", job.id, result))

    async def on_failed(self, job: JobContext[BankSyncJobData], error: BaseException) -> None:
        self.calls.append(("failed", job.id, (job.attempts_made, str(error))))

    async def on_progress(self, job: JobContext[BankSyncJobData], progress: Progress) -> None:
        self.calls.append(("progress", job.id, (progress, job.progress)))


async def test_a_processor_class_runs_with_its_hooks() -> None:
    qs = InMemoryQueueService()
    host = RecordingProcessor()
    assert RecordingProcessor.queue == BANK
    assert RecordingProcessor.concurrency == 3
    worker = qs.create_worker(BANK, host)
    assert qs.create_worker(BANK, host) is worker  # the same instance: the same worker
    ok = await qs.add_job(BANK, "sync", sync("ok"))
    flaky = await qs.add_job(BANK, "sync", sync("flaky"), FAST_RETRY)
    closed = await qs.add_job(BANK, "sync", sync("closed"))
    for job in (ok, flaky, closed):
        await qs.wait_for_job(BANK, job.id, timeout=5)

    info = await qs.get_job(BANK, ok.id)
    assert info is not None and info.progress == {"page": 2}
    assert await qs.get_job_logs(BANK, ok.id) == ["synced"]
    calls = {(kind, job_id): value for kind, job_id, value in host.calls}
    assert calls[("completed", ok.id)] == JobResult(success=True, message="ok")
    assert [value for kind, job_id, value in host.calls
            if kind == "progress" and job_id == ok.id] == [(40, 40), ({"page": 2}, {"page": 2})]
    assert calls[("failed", flaky.id)] == (0, "bank timeout")
    assert calls[("completed", flaky.id)] == JobResult(success=True, message="flaky")
    assert calls[("failed", closed.id)] == (0, "account closed")
    assert ("completed", closed.id) not in calls
    assert (await qs.get_job(BANK, closed.id)).state == JobState.FAILED  # type: ignore[union-attr]
    await qs.close()


async def test_a_failing_hook_never_changes_the_outcome(caplog: pytest.LogCaptureFixture) -> None:
    class Broken(WorkerHost[BankSyncJobData]):
        queue = BANK

        async def process(self, job: JobContext[BankSyncJobData]) -> JobResult:
            await job.update_progress(10)
            return JobResult(success=True)

        async def on_completed(self, job: JobContext[BankSyncJobData],
                               result: ProcessorResult) -> None:
            raise RuntimeError("hook bug")

        async def on_progress(self, job: JobContext[BankSyncJobData],
                              progress: Progress) -> None:
            raise RuntimeError("progress hook bug")

    qs = InMemoryQueueService()
    qs.create_worker(BANK, Broken())
    job = await qs.add_job(BANK, "sync", sync("a"))
    info = await qs.wait_for_job(BANK, job.id, timeout=5)
    assert info.state == JobState.COMPLETED
    assert info.progress == 10
    assert "Broken.on_completed raised" in caplog.text
    assert "Broken.on_progress raised" in caplog.text
    await qs.close()


def test_processor_declarations_are_checked() -> None:
    with pytest.raises(ConfigurationError, match="concurrency must be >= 1"):
        processor("q", concurrency=0)
    with pytest.raises(ConfigurationError, match="FunctionProcessor"):
        processor("q")(object)  # type: ignore[type-var]

    class Unnamed(WorkerHost[BankSyncJobData]):
        async def process(self, job: JobContext[BankSyncJobData]) -> None:
            return None

    with pytest.raises(ConfigurationError, match="Unnamed names no queue"):
        queue_of(Unnamed)
    with pytest.raises(ConfigurationError, match="is not a processor"):
        queue_of(len)  # type: ignore[arg-type]

    async def function(job: JobContext[Any]) -> None:
        return None

    assert queue_of(FunctionProcessor("reports", function)) == "reports"
    assert repr(RecordingProcessor().as_processor()) == "<processor RecordingProcessor>"


class Recorder:
    def __init__(self, fail: bool = False) -> None:
        self.events: list[tuple[str, str]] = []
        self.fail = fail

    def job_started(self, job: JobContext[Any]) -> None:
        if self.fail:
            raise RuntimeError("observer bug")
        self.events.append(("started", job.id))

    def job_completed(self, job: JobContext[Any], duration: float) -> None:
        assert duration >= 0
        self.events.append(("completed", job.id))

    def job_failed(self, job: JobContext[Any], error: BaseException, duration: float) -> None:
        self.events.append(("failed", str(error)))


async def test_observers_see_each_attempt_and_cannot_break_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="queuekit.worker")

    async def process(job: JobContext[BankSyncJobData]) -> JobResult:
        if job.attempts_made == 0:
            raise ConnectionError("first attempt fails")
        return JobResult(success=True)

    assert observe(process, []) is process
    recorder, broken = Recorder(), Recorder(fail=True)
    qs = InMemoryQueueService()
    qs.create_worker(BANK, observe(process, [broken, recorder, JobStateLogger()]))
    job = await qs.add_job(BANK, "sync", sync("a"), FAST_RETRY)
    assert (await qs.wait_for_job(BANK, job.id, timeout=5)).state == JobState.COMPLETED
    assert recorder.events == [("started", job.id), ("failed", "first attempt fails"),
                               ("started", job.id), ("completed", job.id)]
    assert "job observer" in caplog.text and "observer bug" in caplog.text
    assert f"job {job.id} on bank-sync active (attempt 1 of 3)" in caplog.text
    assert f"job {job.id} on bank-sync active (attempt 2 of 3)" in caplog.text
    await qs.close()
