"""The dashboard app in process (httpx over ASGI), on the in-memory backend: mounting,
actions and their CSRF check, read-only mode, masking, the optional service parts."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette
from starlette.routing import Mount

from queuekit import (
    BankSyncJobData,
    ConfigurationError,
    JobContext,
    JobResult,
    JobState,
    UnrecoverableError,
)
from queuekit.cli import main
from queuekit.dashboard import check_bind, create_app, is_loopback
from queuekit.dashboard.guard import CSRF_COOKIE
from queuekit.testing import InMemoryQueueService

BANK = "bank-sync"


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.9", "::1", "[::1]", "localhost"])
def test_loopback_binds_need_no_token(host: str) -> None:
    assert is_loopback(host)
    check_bind(host, None)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3", "dashboard.example.com"])
def test_other_binds_refuse_without_a_token(host: str) -> None:
    with pytest.raises(ConfigurationError, match="without a token"):
        check_bind(host, None)
    check_bind(host, "a-token")


def test_the_command_refuses_before_it_opens_anything(capsys: pytest.CaptureFixture[str]
                                                      ) -> None:
    def open_host(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the host must not be opened")

    assert main(["dashboard", "--host", "0.0.0.0", "--port", "0"], open_host) == 2
    assert "refuses to listen on '0.0.0.0' without a token" in capsys.readouterr().err
    assert main(["demo", "--dashboard", "--host", "0.0.0.0"], open_host) == 2


class FullService(InMemoryQueueService):
    """The memory backend plus the optional methods other features bring (recorded)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[tuple[str, Any]] = []

    async def is_paused(self, queue: str) -> bool:
        return ("pause", queue) in self.calls and ("resume", queue) not in self.calls

    async def pause(self, queue: str) -> None:
        self.calls.append(("pause", queue))

    async def resume(self, queue: str) -> None:
        self.calls.append(("resume", queue))

    async def clean(self, queue: str, state: str = "completed", grace_ms: int = 0,
                    limit: int = 1000) -> list[str]:
        self.calls.append(("clean", (queue, state)))
        return ["1"]

    async def remove_job(self, queue: str, job_id: str) -> bool:
        self.calls.append(("remove", (queue, job_id)))
        return True

    async def get_job_schedulers(self, queue: str) -> list[Any]:
        from types import SimpleNamespace
        return [SimpleNamespace(id="nightly", name="sync", every=None, pattern="0 3 * * *",
                                tz="Europe/Berlin", iteration_count=4, limit=None,
                                next_run_at=1_800_000_000_000)]


async def failing(job: JobContext[BankSyncJobData]) -> JobResult:
    await job.log(f"syncing {job.data.account_id}")
    raise UnrecoverableError("account closed")


@pytest.fixture
async def memory() -> AsyncIterator[FullService]:
    service = FullService()
    yield service
    await service.close()


async def failed_job(service: InMemoryQueueService) -> str:
    service.create_worker(BANK, failing)
    job = await service.add_job(BANK, "sync", BankSyncJobData(
        user_id="u1", account_id="acct-7", sync_type="full"))
    assert (await service.wait_for_job(BANK, job.id, 5)).state == JobState.FAILED
    return job.id


def client_for(app: Any) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                             base_url="http://testserver")


async def test_mounted_under_a_prefix_with_a_working_retry(memory: FullService) -> None:
    job_id = await failed_job(memory)
    await memory.workers[BANK].close()
    host = Starlette(routes=[Mount("/admin/queues", app=create_app(memory))])
    async with client_for(host) as client:
        page = await client.get(f"/admin/queues/queues/{BANK}/jobs/{job_id}")
        assert page.status_code == 200
        assert "account closed" in page.text and "syncing acct-7" in page.text  # its log
        assert 'href="/admin/queues/queues/bank-sync?state=failed"' in page.text
        assert (await client.get("/admin/queues/static/dashboard.js")).status_code == 200
        assert page.headers["x-frame-options"] == "DENY"
        assert "script-src 'self'" in page.headers["content-security-policy"]
        answer = await client.post(
            f"/admin/queues/queues/{BANK}/actions/retry",
            data={"csrf_token": client.cookies[CSRF_COOKIE],
                  "next": f"/admin/queues/queues/{BANK}/jobs/{job_id}"})
        assert answer.status_code == 303
        assert answer.headers["location"].startswith(f"/admin/queues/queues/{BANK}/jobs/")
    info = await memory.get_job(BANK, job_id)
    assert info is not None and info.state == JobState.WAITING


async def test_a_redirect_never_leaves_the_dashboard(memory: FullService) -> None:
    await failed_job(memory)
    async with client_for(create_app(memory)) as client:
        await client.get("/")
        for evil in ("//evil.example/x", "https://evil.example/", "/\\evil.example"):
            answer = await client.post(f"/queues/{BANK}/actions/retry", data={
                "csrf_token": client.cookies[CSRF_COOKIE], "next": evil})
            assert answer.headers["location"].startswith(f"/queues/{BANK}?"), evil


async def test_optional_actions_and_schedulers_show_when_the_service_has_them(
        memory: FullService) -> None:
    job_id = await failed_job(memory)
    async with client_for(create_app(memory)) as client:
        queue_page = await client.get(f"/queues/{BANK}?state=failed")
        for label in ("retry all failed", "clean failed", "pause", "resume"):
            assert f'data-action="{label}"' in queue_page.text
        assert "0 3 * * *" in queue_page.text and "Europe/Berlin" in queue_page.text
        csrf = {"csrf_token": client.cookies[CSRF_COOKIE]}
        await client.post(f"/queues/{BANK}/actions/pause", data=csrf)
        overview = await client.get("/")
        assert "paused" in overview.text and 'data-action="resume"' in overview.text
        await client.post(f"/queues/{BANK}/actions/clean", data={**csrf, "state": "failed"})
        removed = await client.post(f"/queues/{BANK}/jobs/{job_id}/actions/remove", data=csrf)
        assert removed.status_code == 303
        bad = await client.post(f"/queues/{BANK}/actions/clean", data={**csrf, "state": "x"})
        assert bad.status_code == 400
        unknown = await client.post(f"/queues/{BANK}/jobs/{job_id}/actions/retry", data=csrf)
        assert unknown.status_code == 501  # this service has no retry_job()
    assert memory.calls == [("pause", BANK), ("clean", (BANK, "failed")),
                            ("remove", (BANK, job_id))]


async def test_read_only_shows_no_action_and_refuses_posts(memory: FullService) -> None:
    job_id = await failed_job(memory)
    async with client_for(create_app(memory, read_only=True)) as client:
        for path in ("/", f"/queues/{BANK}?state=failed", f"/queues/{BANK}/jobs/{job_id}"):
            page = await client.get(path)
            assert page.status_code == 200 and "<button" not in page.text
        for action in ("retry", "pause", "clean"):
            answer = await client.post(f"/queues/{BANK}/actions/{action}",
                                       data={"csrf_token": client.cookies[CSRF_COOKIE]})
            assert answer.status_code == 403
    assert memory.calls == []
    assert (await memory.get_job_counts(BANK))["failed"] == 1


async def test_secret_looking_keys_are_masked_at_any_depth() -> None:
    service = InMemoryQueueService()
    # what a foreign producer could have stored (queuekit's own add_job refuses it)
    from queuekit.dashboard.views import MASK, Reader
    reader = Reader(service)
    shown = reader.masked({"userId": "u", "accessToken": "t", "nested": [
        {"db_password": "p", "api-key": "k", "keep": 1}]})
    assert '"accessToken": "' + MASK in shown and '"keep": 1' in shown
    assert '"t"' not in shown and '"p"' not in shown and '"k"' not in shown
    await service.close()


async def test_an_async_service_factory_and_a_missing_job(memory: FullService) -> None:
    async def resolve() -> FullService:
        return memory

    async with client_for(create_app(resolve, refresh=0)) as client:
        assert (await client.get("/")).status_code == 200
        missing = await client.get(f"/queues/{BANK}/jobs/404")
        assert missing.status_code == 404 and "no job '404'" in missing.text
        assert (await client.get(f"/queues/{BANK}?state=nope")).status_code == 404


class FlowService(InMemoryQueueService):
    """A service with ``get_flow`` (what the flows feature adds): the job is a parent."""

    async def get_flow(self, queue: str, job_id: str) -> Any:
        from types import SimpleNamespace

        parent = await self.get_job(queue, job_id)
        child = SimpleNamespace(id="c1", name="sync-transactions", queue="bank-sync",
                                state="completed")
        return SimpleNamespace(job=parent, children=[SimpleNamespace(job=child, children=[])])


async def test_a_flow_tree_shows_on_the_job_page() -> None:
    service = FlowService()
    job = await service.add_job("reports", "monthly-report", {
        "userId": "u1", "reportType": "monthly", "startDate": "2026-01-01",
        "endDate": "2026-01-31"})
    async with client_for(create_app(service)) as client:
        page = await client.get(f"/queues/reports/jobs/{job.id}")
    assert '<ul class="flow">' in page.text
    assert 'href="/queues/bank-sync/jobs/c1"' in page.text
    assert "bank-sync / sync-transactions #c1" in page.text
    await service.close()
