"""The monitoring tables and the health check, on the in-memory twin."""

from __future__ import annotations

import datetime as dt
from typing import Any

from queuekit import HealthReport, JobContext, JobInfo, JobState, QueuekitSettings, QueueName
from queuekit.plugins import Plugin, PluginSet
from queuekit.processors import FunctionProcessor
from queuekit.runtime.monitor import (
    check_health,
    collect_stats,
    expected_workers,
    format_age,
    format_health,
    format_jobs,
    format_stats,
)
from queuekit.testing import InMemoryQueueService

NOW = dt.datetime(2026, 1, 2, 12, 0, tzinfo=dt.UTC)


def test_ages_use_their_largest_unit() -> None:
    assert [format_age(s) for s in (-3, 0, 59, 60, 3599, 3600, 86399, 86400 * 3)] == [
        "0s", "0s", "59s", "1m", "59m", "1h", "23h", "3d"]


def test_job_table_shows_attempts_reason_and_age() -> None:
    job = JobInfo(id="17", name="sync", queue="bank-sync", data={}, state=JobState.FAILED,
                  progress=0, attempts_made=3, return_value=None,
                  failed_reason="bank API\ntimed out " + "x" * 80,
                  created_at=NOW - dt.timedelta(minutes=90), processed_at=None,
                  finished_at=None, max_attempts=3)
    header, rule, row = format_jobs([job], now=NOW).splitlines()
    assert header.split() == ["id", "name", "attempts", "failed", "reason", "age"]
    assert row.split()[:5] == ["17", "sync", "3/3", "bank", "API"]
    assert row.endswith("1h")
    assert "..." in row and "\n" not in row
    assert len(rule) == len(header)


def test_stats_table_right_aligns_counts() -> None:
    table = format_stats({"reports": {"waiting": 12, "failed": 3},
                          "bank-sync": {"waiting": 1}})
    lines = table.splitlines()
    assert lines[0].split()[0] == "queue"
    assert lines[2].split() == ["reports", "12", "0", "0", "0", "0", "3", "0"]
    assert lines[3].split() == ["bank-sync", "1", "0", "0", "0", "0", "0", "0"]
    assert lines[2].index("12") < lines[3].index("1 ") + 2  # numbers end in one column


async def test_health_checks_the_expected_workers() -> None:
    qs = InMemoryQueueService()

    async def process(job: JobContext[Any]) -> None:
        return None

    report = await check_health(qs, [QueueName.REPORTS])
    assert not report.ok
    assert report.reasons == ("no worker is running for queue 'reports'",)
    qs.create_worker(QueueName.REPORTS, process)
    report = await check_health(qs, [QueueName.REPORTS])
    assert report.ok
    assert format_health(report) == ("ok: memory store answers, circuit breaker closed, "
                                     "workers running for: reports")
    stats = await collect_stats(qs)
    assert list(stats) == sorted(qs.registry)
    await qs.close()
    closed = await check_health(qs, [])
    assert format_health(closed) == ("unhealthy: worker for reports is not running; "
                                     "service is closed")


def test_expected_workers_follow_the_configuration() -> None:
    async def noop(job: JobContext[Any]) -> None:
        return None

    plugins = PluginSet([Plugin("p", [FunctionProcessor("reports", noop),
                                      FunctionProcessor("analytics", noop)])])
    settings = QueuekitSettings(backend="memory")
    assert expected_workers(settings, plugins) == ["analytics", "reports"]
    only = QueuekitSettings(backend="memory", worker={"queues": ["reports"]})
    assert expected_workers(only, plugins) == ["reports"]
    off = QueuekitSettings(backend="memory", worker={"enabled": False})
    assert expected_workers(off, plugins) == []
    ok = HealthReport(ok=True, backend="redis", redis="ok", breaker="closed")
    assert format_health(ok).endswith("workers running for: none expected")
