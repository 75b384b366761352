"""The dashboard in a real headless browser (Debian's chromium), on a real Redis.

The counts are checked against Redis's own keys, the retry against Redis's lists; a
job added by a foreign producer (raw bullmq) with a secret-looking key is shown masked.
Screenshots of the overview and of a job page go to tests/artifacts/dashboard/.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import bullmq
import httpx
import pytest
from playwright.async_api import Page, expect

from queuekit import (
    BankSyncJobData,
    JobContext,
    JobOptions,
    JobResult,
    JobState,
    RedisQueueService,
    UnrecoverableError,
)
from queuekit.dashboard import serve
from queuekit.jobs import COUNT_STATES
from queuekit.redis.keys import queue_key
from tests.conftest import SettingsFactory
from tests.support.browser import ARTIFACTS, chromium
from tests.support.redis_server import RedisServer

pytestmark = [pytest.mark.redis, pytest.mark.timeout(120)]

#: BullMQ's key (and its type) behind each count of ``get_job_counts``.
COUNT_KEYS = {"waiting": ("wait", "list"), "active": ("active", "list"),
              "paused": ("paused", "list"), "delayed": ("delayed", "zset"),
              "prioritized": ("prioritized", "zset"), "completed": ("completed", "zset"),
              "failed": ("failed", "zset"), "waiting-children": ("waiting-children", "zset")}


def sync(user: str) -> BankSyncJobData:
    return BankSyncJobData(user_id=user, account_id="acct-1", sync_type="full")


@dataclass
class Jobs:
    failed: list[str]
    foreign: str


@pytest.fixture
async def qs(make_settings: SettingsFactory) -> AsyncIterator[RedisQueueService]:
    service = await RedisQueueService.connect(make_settings())
    yield service
    await service.close()


@pytest.fixture
async def jobs(qs: RedisQueueService, redis_server: RedisServer, key_prefix: str) -> Jobs:
    """Jobs in every state a list shows, on three queues, one from a foreign producer."""
    async def process(job: JobContext[BankSyncJobData]) -> JobResult:
        if job.data.user_id.startswith("bad"):
            raise UnrecoverableError(f"account of {job.data.user_id} is closed")
        return JobResult(success=True)

    first = [await qs.add_job("bank-sync", "sync", sync(u)) for u in ("ok-1", "bad-1",
                                                                      "ok-2", "bad-2")]
    worker = qs.create_worker("bank-sync", process)
    for job in first:
        await qs.wait_for_job("bank-sync", job.id, timeout=15)
    await worker.close()
    await qs.add_job("bank-sync", "sync", sync("later"), options=JobOptions(delay=600_000))
    await qs.add_jobs("bank-sync", [("sync", sync("w1")), ("sync", sync("w2"))])
    report = {"userId": "u1", "reportType": "monthly", "startDate": "2026-01-01",
              "endDate": "2026-01-31"}
    await qs.add_job("reports", "generate-report", report, options=JobOptions(priority=5))
    await qs.add_job("reports", "generate-report", report)
    # A producer that is not queuekit (raw bullmq), and ignores queuekit's secret policy.
    foreign = bullmq.Queue("notifications", {"connection": redis_server.url,
                                             "prefix": key_prefix})
    try:
        job = await foreign.add("send", {"userId": "u1", "type": "email",
                                         "accessToken": "tok-secret-4242"})
    finally:
        await foreign.close()
    failed = [j.id for j in first if j.data.user_id.startswith("bad")]
    return Jobs(failed=failed, foreign=str(job.id))


@contextlib.asynccontextmanager
async def dashboard(service: RedisQueueService, **options: Any) -> AsyncIterator[str]:
    """The dashboard on a free loopback port, served in this test's loop."""
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    task = asyncio.ensure_future(serve(service, port=0, on_ready=ready.set_result, **options))
    try:
        yield await asyncio.wait_for(ready, 20)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def redis_counts(qs: RedisQueueService, queue: str) -> dict[str, int]:
    client = qs.connection.client
    counts = {}
    for state, (name, kind) in COUNT_KEYS.items():
        key = queue_key(qs.prefix, queue, name)
        counts[state] = int(await (client.llen(key) if kind == "list" else client.zcard(key)))
    return counts


async def overview_counts(page: Page) -> dict[str, dict[str, int]]:
    found: dict[str, dict[str, int]] = {}
    for row in await page.query_selector_all("#overview tbody tr"):
        queue = await row.get_attribute("data-queue")
        assert queue is not None
        cells = await row.query_selector_all("td.count")
        found[queue] = {str(await c.get_attribute("data-state")): int(await c.inner_text())
                        for c in cells}
    return found


@pytest.fixture
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS


async def test_overview_job_page_retry_and_masking(qs: RedisQueueService, jobs: Jobs,
                                                   artifacts: Path) -> None:
    async with dashboard(qs, refresh=0) as url, chromium() as browser:
        page = await browser.new_page(viewport={"width": 1400, "height": 900})
        page.set_default_timeout(10_000)
        await page.goto(url)
        shown = await overview_counts(page)
        assert {"bank-sync", "reports", "notifications"} <= set(shown)
        for queue, counts in shown.items():
            assert set(counts) == set(COUNT_STATES)
            assert counts == await redis_counts(qs, queue), queue
        assert shown["bank-sync"]["failed"] == 2 and shown["bank-sync"]["delayed"] == 1
        await page.screenshot(path=str(artifacts / "overview.png"), full_page=True)

        # a failed job's page: its reason and the stack trace of the failed attempt
        failed_id = jobs.failed[0]
        await page.click("#overview tr[data-queue='bank-sync'] td[data-state='failed'] a")
        await page.click(f"#jobs tr[data-job='{failed_id}'] a")
        assert await page.inner_text("#failed-reason") == "account of bad-1 is closed"
        stack = await page.inner_text("pre.stacktrace")
        assert "Traceback" in stack and "in process" in stack
        assert "UnrecoverableError: account of bad-1 is closed" in stack
        await page.screenshot(path=str(artifacts / "job.png"), full_page=True)

        # retry: the failed jobs go back to Redis's wait list
        await page.click("button[data-action='retry all failed']")
        await page.wait_for_selector(".flash")
        assert "moved 2 failed job(s) back to waiting" in await page.inner_text(".flash")
        client = qs.connection.client
        waiting = await client.lrange(queue_key(qs.prefix, "bank-sync", "wait"), 0, -1)
        assert set(jobs.failed) <= set(waiting)
        assert await client.zcard(queue_key(qs.prefix, "bank-sync", "failed")) == 0
        assert await page.inner_text("#job-state") == "waiting"

        # the foreign job's secret-looking key is masked, its other fields are not
        await page.goto(f"{url}queues/notifications/jobs/{jobs.foreign}")
        payload = await page.inner_text("#payload")
        assert '"accessToken": "••••••"' in payload and '"userId": "u1"' in payload
        assert "tok-secret-4242" not in await page.content()
        await page.goto(f"{url}queues/notifications?state=waiting")
        assert "tok-secret-4242" not in await page.content()


async def test_overview_refreshes_itself(qs: RedisQueueService, jobs: Jobs) -> None:
    async with dashboard(qs, refresh=0.3) as url, chromium() as browser:
        page = await browser.new_page()
        await page.goto(url)
        cell = "#overview tr[data-queue='reports'] td[data-state='waiting']"
        assert await page.inner_text(cell) == "1"
        await qs.add_job("reports", "generate-report", {
            "userId": "u2", "reportType": "annual", "startDate": "2026-01-01",
            "endDate": "2026-12-31"})
        # no reload: the page's script swaps in fresh content within a few refreshes
        # (expect() polls from outside: the page's CSP forbids evaluating strings)
        await expect(page.locator(cell)).to_have_text("2", timeout=10_000)


async def test_read_only_has_no_buttons_and_refuses_posts(
        qs: RedisQueueService, jobs: Jobs) -> None:
    async with dashboard(qs, read_only=True, refresh=0) as url, chromium() as browser:
        page = await browser.new_page()
        for path in ("", "queues/bank-sync?state=failed",
                     f"queues/bank-sync/jobs/{jobs.failed[0]}"):
            await page.goto(url + path)
            assert await page.query_selector("#read-only") is not None
            assert await page.query_selector_all("button, form[method='post']") == []
        csrf = next(c["value"] for c in await page.context.cookies()
                    if c["name"] == "qk_dashboard_csrf")
        answer = await page.request.post(f"{url}queues/bank-sync/actions/retry",
                                         form={"csrf_token": csrf})
        assert answer.status == 403
    assert (await qs.get_job("bank-sync", jobs.failed[0]) or _missing()).state == JobState.FAILED


async def test_a_post_without_the_csrf_token_is_refused(qs: RedisQueueService,
                                                        jobs: Jobs) -> None:
    async with dashboard(qs, refresh=0) as url, httpx.AsyncClient() as client:
        await client.get(url)  # sets the CSRF cookie, but the form does not echo it
        answer = await client.post(f"{url}queues/bank-sync/actions/retry", data={})
        assert answer.status_code == 403 and "CSRF" in answer.text
        forged = await client.post(
            f"{url}queues/bank-sync/actions/retry",
            data={"csrf_token": client.cookies["qk_dashboard_csrf"]},
            headers={"origin": "http://evil.example"})
        assert forged.status_code == 403
    assert await _failed_count(qs) == 2


async def _failed_count(qs: RedisQueueService) -> int:
    return (await qs.get_job_counts("bank-sync"))["failed"]


def _missing() -> Any:
    raise AssertionError("job disappeared")


async def test_a_token_is_required_when_set(qs: RedisQueueService, jobs: Jobs) -> None:
    async with dashboard(qs, refresh=0, token="t0ken") as url, chromium() as browser:
        async with httpx.AsyncClient() as client:
            assert (await client.get(url)).status_code == 401
            bearer = await client.get(url, headers={"authorization": "Bearer t0ken"})
            assert bearer.status_code == 200
            assert (await client.get(url, auth=("any", "t0ken"))).status_code == 200
            assert (await client.get(url, auth=("any", "wrong"))).status_code == 401
        page = await browser.new_page()
        await page.goto(f"{url}?token=t0ken")  # sets a cookie, then a clean address
        assert "token" not in page.url
        assert await page.query_selector("#overview") is not None
