"""Job schedulers (BullMQ's ``upsertJobScheduler``) on every backend.

On Redis the runs fall due in real time; in memory ``advance(ms)`` moves the virtual
clock (scheduler runs are never jumped to by the idle clock), so the same assertions
hold there without waiting.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from queuekit import (
    BankSyncJobData,
    JobContext,
    JobResult,
    PayloadValidationError,
    QueueName,
    QueueService,
    SensitiveDataError,
)
from queuekit.events import EventType
from queuekit.schedules import JobSchedulerInfo
from queuekit.testing import InMemoryQueueService
from tests.support.waiting import eventually

BANK = QueueName.BANK_SYNC
SYNC = BankSyncJobData(user_id="u1", account_id="a1", sync_type="incremental")
#: How far a run's start may be from the spacing ``every`` asks for, on Redis. The worker
#: blocks on the marker until REDIS_TIMER_SLACK (100 ms) before the run is due and
#: sleeps the rest locally, so a run starts a few ms late on an idle machine; this 2-core
#: machine runs other test sessions at once, which adds scheduling delays of tens of ms.
#: Under the cluster suite's six servers a first run has started ~200 ms late.
SPACING_TOLERANCE_MS = 180


async def elapse(service: QueueService, ms: int) -> None:
    """Let ``ms`` of (virtual, in memory) time pass, with every run due on the way done."""
    if isinstance(service, InMemoryQueueService):
        await service.advance(ms)
    else:
        await asyncio.sleep(ms / 1000)


async def wait_runs(service: QueueService, runs: list[Any], count: int, every: int) -> None:
    """Until ``runs`` holds ``count`` entries (in memory: advancing ``every`` at a time)."""
    if isinstance(service, InMemoryQueueService):
        for _ in range(count * 3):
            if len(runs) >= count:
                return
            await service.advance(every)
        raise AssertionError(f"{len(runs)} runs, expected {count}")

    async def probe() -> int:
        return len(runs)

    await eventually(probe, lambda n: n >= count, timeout=10 + count * every / 1000)


async def pending_runs(service: QueueService, scheduler_id: str) -> list[str]:
    """Ids of the scheduler's runs that wait to start (delayed, waiting, prioritized)."""
    found = []
    for state in ("delayed", "waiting", "prioritized"):
        jobs = await service.get_jobs(BANK, state, limit=100)
        found += [j.id for j in jobs if j.id.startswith(f"repeat:{scheduler_id}:")]
    return found


def recorder(service: QueueService, scheduler_id: str, runs: list[tuple[str, int]],
             pending: list[int] | None = None) -> Callable[[JobContext[BankSyncJobData]],
                                                           Awaitable[JobResult]]:
    async def process(job: JobContext[BankSyncJobData]) -> JobResult:
        runs.append((job.id, job.attempts_made))
        if pending is not None:
            pending.append(len(await pending_runs(service, scheduler_id)))
        return JobResult(success=True)

    return process


def scheduled_ms(job_id: str) -> int:
    return int(job_id.rsplit(":", 1)[1])


async def test_every_runs_repeatedly_on_time_with_one_pending_run(
    service: QueueService, caplog: pytest.LogCaptureFixture,
) -> None:
    every = 300
    runs: list[tuple[str, int]] = []
    pending: list[int] = []
    service.create_worker(BANK, recorder(service, "sync-300", runs, pending), concurrency=2)
    info = await service.upsert_job_scheduler(BANK, "sync-300", every=every,
                                              name="sync-transactions", data=SYNC)
    assert (info.id, info.name, info.every, info.pattern) == ("sync-300", "sync-transactions",
                                                               every, None)
    assert info.data == SYNC
    await wait_runs(service, runs, 4, every)
    ids = [job_id for job_id, _ in runs[:4]]
    assert len(set(ids)) == 4
    # The run ids carry the times they were due: exactly `every` apart.
    assert [b - a for a, b in itertools.pairwise(map(scheduled_ms, ids))] == [every] * 3
    started = [(await service.get_job(BANK, job_id)) for job_id in ids]
    starts = [int(j.processed_at.timestamp() * 1000) for j in started if j and j.processed_at]
    assert len(starts) == 4
    # The first run's start also waits for the worker's own start-up, which raced the
    # upsert (on the cluster suite's six servers it has started 230 ms late, then the next
    # run on time); the spacing of the runs after it is the scheduler's alone.
    for gap in (b - a for a, b in itertools.pairwise(starts[1:])):
        assert abs(gap - every) <= SPACING_TOLERANCE_MS, starts
    # While each run ran, the scheduler had produced exactly one next run.
    assert pending[:4] == [1, 1, 1, 1]
    assert len(await pending_runs(service, "sync-300")) == 1
    current = await service.get_job_scheduler(BANK, "sync-300")
    assert current is not None and current.iteration_count >= 5
    assert current.next_run_at == scheduled_ms((await pending_runs(service, "sync-300"))[0])
    # Advancing logged no error (it would still produce the runs after some failures).
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []


async def test_limit_three_gives_exactly_three_runs(service: QueueService) -> None:
    runs: list[tuple[str, int]] = []
    service.create_worker(BANK, recorder(service, "three", runs))
    await service.upsert_job_scheduler(BANK, "three", every=100, limit=3, data=SYNC)
    await wait_runs(service, runs, 3, 100)
    await elapse(service, 600)  # six more periods: nothing more may run
    assert len(runs) == 3
    assert await pending_runs(service, "three") == []
    info = await service.get_job_scheduler(BANK, "three")
    assert info is not None
    assert (info.limit, info.iteration_count, info.next_run_at) == (3, 3, None)


async def test_a_failed_and_retried_run_is_one_iteration(service: QueueService) -> None:
    attempts: list[tuple[str, int]] = []

    async def flaky(job: JobContext[BankSyncJobData]) -> JobResult:
        attempts.append((job.id, job.attempts_made))
        if job.attempts_made == 0 and len(attempts) == 1:
            raise RuntimeError("bank API timeout")
        return JobResult(success=True)

    service.create_worker(BANK, flaky)
    await service.upsert_job_scheduler(BANK, "retry", every=150, limit=2, data=SYNC,
                                       options={"attempts": 2,
                                                "backoff": {"type": "fixed", "delay": 20}})
    await wait_runs(service, attempts, 3, 150)
    await elapse(service, 450)
    assert len({job_id for job_id, _ in attempts}) == 2
    assert sorted(made for _, made in attempts) == [0, 0, 1]
    info = await service.get_job_scheduler(BANK, "retry")
    assert info is not None and info.iteration_count == 2


async def test_remove_stops_the_runs(service: QueueService) -> None:
    runs: list[tuple[str, int]] = []
    service.create_worker(BANK, recorder(service, "gone", runs))
    await service.upsert_job_scheduler(BANK, "gone", every=150, data=SYNC)
    await wait_runs(service, runs, 2, 150)
    assert await service.remove_job_scheduler(BANK, "gone") is True
    seen = len(runs)
    assert await pending_runs(service, "gone") == []
    await elapse(service, 600)
    assert len(runs) == seen
    assert await service.get_job_scheduler(BANK, "gone") is None
    assert await service.get_job_schedulers(BANK) == []
    assert await service.remove_job_scheduler(BANK, "gone") is False


async def test_upsert_with_a_new_spec_takes_the_new_spacing(service: QueueService) -> None:
    runs: list[tuple[str, int]] = []
    service.create_worker(BANK, recorder(service, "respec", runs))
    await service.upsert_job_scheduler(BANK, "respec", every=150, data=SYNC)
    await wait_runs(service, runs, 2, 150)
    info = await service.upsert_job_scheduler(BANK, "respec", every=400, data=SYNC)
    assert info.every == 400
    assert len(await service.get_job_schedulers(BANK)) == 1
    assert len(await pending_runs(service, "respec")) <= 1
    before = len(runs)
    await wait_runs(service, runs, before + 3, 400)
    later = [scheduled_ms(job_id) for job_id, _ in runs[before:before + 3]]
    assert [b - a for a, b in itertools.pairwise(later)] == [400, 400]


async def test_same_id_twice_is_one_scheduler_with_one_pending_run(
    service: QueueService,
) -> None:
    for _ in range(2):
        await service.upsert_job_scheduler(BANK, "nightly", pattern="0 3 * * *",
                                           tz="Europe/Berlin", data=SYNC)
    [info] = await service.get_job_schedulers(BANK)
    assert (info.id, info.pattern, info.tz, info.iteration_count) == (
        "nightly", "0 3 * * *", "Europe/Berlin", 1)
    assert len(await pending_runs(service, "nightly")) == 1
    assert (await service.get_job_counts(BANK))["delayed"] == 1


@pytest.mark.parametrize(("start", "expected_local"), [
    # The night before the spring change (28 March 2027, 02:00 -> 03:00 in Berlin): CET.
    (dt.datetime(2027, 3, 26, 12, tzinfo=dt.UTC), dt.datetime(2027, 3, 27, 3)),
    # Across it: 03:00 on the 28th is CEST, an hour less after UTC midnight.
    (dt.datetime(2027, 3, 27, 12, tzinfo=dt.UTC), dt.datetime(2027, 3, 28, 3)),
    # The autumn change (31 October 2027, 03:00 -> 02:00): CET again.
    (dt.datetime(2027, 10, 30, 12, tzinfo=dt.UTC), dt.datetime(2027, 10, 31, 3)),
])
async def test_pattern_with_tz_next_run_across_dst(service: QueueService, start: dt.datetime,
                                                   expected_local: dt.datetime) -> None:
    info = await service.upsert_job_scheduler(BANK, "berlin", pattern="0 3 * * *",
                                              tz="Europe/Berlin", start_date=start, data=SYNC)
    # An independent computation: 03:00 on that day on Berlin's wall clock.
    expected = expected_local.replace(tzinfo=ZoneInfo("Europe/Berlin"))
    assert info.next_run_at == int(expected.timestamp() * 1000)
    assert info.start_date == int(start.timestamp() * 1000)


async def test_scheduler_runs_show_in_events(service: QueueService) -> None:
    async with service.events(BANK) as events:
        service.create_worker(BANK, recorder(service, "evt", []))
        await service.upsert_job_scheduler(BANK, "evt", every=60_000, data=SYNC)
        seen: list[tuple[EventType, str]] = []
        async for event in events:
            if event.job_id.startswith("repeat:evt:"):
                seen.append((event.type, event.job_id))
            if event.type == EventType.COMPLETED:
                break
    types = [t for t, _ in seen]
    assert EventType.ACTIVE in types and types[-1] == EventType.COMPLETED


BAD_SPECS: list[tuple[dict[str, Any], str]] = [
    ({}, "every"),
    ({"every": 1000, "pattern": "* * * * *"}, "every"),
    ({"every": 0}, "every"),
    ({"pattern": "not a cron"}, "pattern"),
    ({"pattern": "61 * * * *"}, "pattern"),
    ({"pattern": "0 3 * * *", "tz": "Mars/Olympus"}, "tz"),
    ({"every": 1000, "end_date": dt.datetime(2020, 1, 1, tzinfo=dt.UTC)}, "end_date"),
    ({"every": 1000, "limit": 0}, "limit"),
    ({"every": 1000, "data": {"userId": "u1"}}, "accountId"),
    ({"every": 1000, "options": {"attempts": 0}}, "attempts"),
    ({"every": 1000, "options": {"delay": 5}}, "options.delay"),
]


async def store_size(service: QueueService) -> int:
    connection = getattr(service, "connection", None)
    if connection is None:
        return len(await service.get_job_schedulers(BANK)) + sum(
            (await service.get_job_counts(BANK)).values())
    prefix = service.settings.redis.prefix
    return len([k async for k in connection.client.scan_iter(match=f"{prefix}:*")])


@pytest.mark.parametrize(("spec", "field"), BAD_SPECS)
async def test_bad_spec_is_refused_and_nothing_written(service: QueueService,
                                                       spec: dict[str, Any], field: str) -> None:
    await service.get_job_counts(BANK)  # BullMQ's meta keys exist either way
    before = await store_size(service)
    spec = {"data": SYNC, **spec}
    with pytest.raises(PayloadValidationError) as caught:
        await service.upsert_job_scheduler(BANK, "bad", **spec)
    assert any(field in error.field for error in caught.value.errors), caught.value.errors
    assert field in str(caught.value)
    assert await store_size(service) == before
    assert await service.get_job_scheduler(BANK, "bad") is None


async def test_secret_in_the_template_is_refused(service: QueueService) -> None:
    with pytest.raises(SensitiveDataError):
        await service.upsert_job_scheduler(
            QueueName.NOTIFICATIONS, "leak", every=1000,
            data={"userId": "u1", "type": "email", "templateId": "t",
                  "data": {"meta": {"apiKey": "sk-123"}}})
    assert await service.get_job_schedulers(QueueName.NOTIFICATIONS) == []


def test_info_is_a_plain_record() -> None:
    info = JobSchedulerInfo(id="s", queue="q", name="n", every=5, pattern=None, tz=None,
                            limit=None, iteration_count=1, next_run_at=7, start_date=None,
                            end_date=None, data=SYNC)
    assert info.to_dict()["data"] == SYNC.to_wire()


async def test_a_run_fetched_with_the_previous_completion_still_advances(
    service: QueueService,
) -> None:
    # One slot, busy with a plain job while the scheduler's first run becomes waiting:
    # the run is then handed over with that job's completion (fetch-next on Redis).
    release = asyncio.Event()
    runs: list[str] = []

    async def process(job: JobContext[BankSyncJobData]) -> JobResult:
        if job.id.startswith("repeat:"):
            runs.append(job.id)
        else:
            await release.wait()
        return JobResult(success=True)

    plain = await service.add_job(BANK, "plain", SYNC)
    service.create_worker(BANK, process, concurrency=1)

    async def plain_active() -> str:
        info = await service.get_job(BANK, plain.id)
        return str(info.state) if info else ""

    await eventually(plain_active, lambda state: state == "active")
    await service.upsert_job_scheduler(BANK, "handover", every=200, data=SYNC)
    assert len(await pending_runs(service, "handover")) == 1  # waiting behind the plain job
    release.set()
    await wait_runs(service, runs, 3, 200)
    assert len(set(runs[:3])) == 3


def clock_ms(service: QueueService) -> int:
    if isinstance(service, InMemoryQueueService):
        return service.clock.now_ms()
    return int(time.time() * 1000)


async def test_end_date_stops_the_runs(service: QueueService) -> None:
    runs: list[tuple[str, int]] = []
    service.create_worker(BANK, recorder(service, "ends", runs))
    # Runs are due at 0, 200, 400 and 600 ms; one at 800 would be after the end. The 100 ms
    # margin covers the time between reading the clock here and the upsert's own clock.
    # Each next run is produced when the previous one starts, and none once that start is
    # past the end: a run may start up to 300 ms late (a loaded 2-core machine running a
    # 6-node cluster has started runs ~200 ms late).
    end = clock_ms(service) + 700
    info = await service.upsert_job_scheduler(BANK, "ends", every=200, end_date=end, data=SYNC)
    assert info.end_date == end
    await wait_runs(service, runs, 4, 200)
    await elapse(service, 900)
    assert len(runs) == 4
    assert all(scheduled_ms(job_id) <= end for job_id, _ in runs)
    assert await pending_runs(service, "ends") == []
    stopped = await service.get_job_scheduler(BANK, "ends")
    assert stopped is not None and stopped.next_run_at is None


async def test_a_pattern_whose_first_run_is_after_end_date_is_refused(
    service: QueueService,
) -> None:
    soon = clock_ms(service) + 60_000
    with pytest.raises(PayloadValidationError, match="end_date"):
        await service.upsert_job_scheduler(BANK, "never", pattern="0 3 1 1 *", end_date=soon,
                                           data=SYNC)
    assert await service.get_job_schedulers(BANK) == []
