"""Redis-only behaviour: timing traps of bullmq 3.4.x, fail-fast start-up, wire format,
shutdown order and connection hygiene. Every test runs against a real redis-server."""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import socket
import threading
import time
from collections.abc import Iterator

import bullmq
import pytest

from containers import ApplicationContainer, SharedContainer, resolve, start, stop
from queuekit import (
    BankSyncJobData,
    JobContext,
    JobResult,
    JobState,
    PayloadValidationError,
    QueuekitSettings,
    QueueName,
    QueueService,
    QueueUnavailableError,
    RedisQueueService,
)
from queuekit.plugins import Plugin, PluginSet
from queuekit.processors import FunctionProcessor
from queuekit.redis.connection import QueueConnection
from tests.conftest import SettingsFactory
from tests.support.redis_server import RedisServer, free_port

BANK = QueueName.BANK_SYNC
SYNC = BankSyncJobData(user_id="u1", account_id="a1", sync_type="full")


def prefix_keys(server: RedisServer, prefix: str) -> list[str]:
    with server.client() as client:
        return sorted(client.scan_iter(f"{prefix}:*"))


async def test_backoff_gaps_are_honoured_to_tens_of_ms(make_settings: SettingsFactory) -> None:
    qs = await RedisQueueService.connect(make_settings())
    starts: list[float] = []

    async def process(job: JobContext[BankSyncJobData]) -> JobResult:
        starts.append(time.monotonic())
        if job.attempts_made < 2:
            raise RuntimeError("flaky bank")
        return JobResult(success=True)

    try:
        qs.create_worker(BANK, process)
        job = await qs.add_job(BANK, "sync", SYNC,
                               {"attempts": 3, "backoff": {"type": "exponential", "delay": 200}})
        info = await qs.wait_for_job(BANK, job.id, timeout=10)
    finally:
        await qs.close()
    assert info.state == JobState.COMPLETED
    assert info.attempts_made == 3
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    # Backoff 200 ms then 400 ms. bullmq alone rounds its wait up to whole seconds and
    # Redis's 100 ms timer adds more; we allow 80 ms for a loaded 2-core machine.
    assert 0.19 <= gaps[0] <= 0.28, gaps
    assert 0.39 <= gaps[1] <= 0.48, gaps


@pytest.mark.slow
async def test_delayed_job_after_a_long_idle_starts_on_time(
    make_settings: SettingsFactory,
) -> None:
    """redis-py 8's 5 s socket timeout used to break the worker's 5-10 s blocking wait."""
    qs = await RedisQueueService.connect(make_settings())
    started: list[float] = []

    async def process(job: JobContext[BankSyncJobData]) -> JobResult:
        started.append(time.time())
        return JobResult(success=True)

    try:
        qs.create_worker(BANK, process)
        await asyncio.sleep(7)  # the point of the test: the worker sits idle for 7 s
        job = await qs.add_job(BANK, "sync", SYNC, {"delay": 6000})
        info = await qs.wait_for_job(BANK, job.id, timeout=15)
    finally:
        await qs.close()
    assert info.state == JobState.COMPLETED
    # On the wall clock from the job's own timestamp: the clock its due time is computed
    # on (a VM's wall clock may be adjusted against the monotonic one meanwhile).
    assert info.created_at is not None
    waited = started[0] - info.created_at.timestamp()
    assert 6.0 <= waited <= 7.0, waited


async def test_payload_is_camelcase_json_as_node_expects(
    make_settings: SettingsFactory, redis_server: RedisServer, key_prefix: str
) -> None:
    qs = await RedisQueueService.connect(make_settings())
    try:
        job = await qs.add_job(BANK, "sync-transactions", SYNC)
    finally:
        await qs.close()
    with redis_server.client() as client:
        stored = client.hgetall(f"{key_prefix}:{BANK}:{job.id}")
    assert json.loads(stored["data"]) == {"userId": "u1", "accountId": "a1", "syncType": "full"}
    assert stored["name"] == "sync-transactions"
    opts = json.loads(stored["opts"])
    assert opts["attempts"] == 3
    assert opts["backoff"] == {"type": "exponential", "delay": 1000}


async def test_invalid_payload_leaves_redis_untouched(
    make_settings: SettingsFactory, private_server: RedisServer, key_prefix: str
) -> None:
    # A server of its own: on the shared one, other tests' keys expire meanwhile and
    # DBSIZE moves for reasons that have nothing to do with this test.
    redis_server = private_server
    qs = await RedisQueueService.connect(make_settings(redis={"url": redis_server.url}))
    try:
        await qs.add_job(BANK, "sync", SYNC)  # the queue exists: its keys are there
        before = prefix_keys(redis_server, key_prefix)
        with redis_server.client() as client:
            size = client.dbsize()
        with pytest.raises(PayloadValidationError, match="accountId"):
            await qs.add_job(BANK, "sync", {"userId": "u1", "syncType": "full"})
        with pytest.raises(PayloadValidationError):
            await qs.add_jobs(BANK, [("sync", SYNC), ("sync", {"userId": 3})])
        assert prefix_keys(redis_server, key_prefix) == before
        with redis_server.client() as client:
            assert client.dbsize() == size
    finally:
        await qs.close()


async def test_job_from_another_producer_with_a_bad_payload_fails_at_once(
    make_settings: SettingsFactory, redis_server: RedisServer, key_prefix: str
) -> None:
    qs = await RedisQueueService.connect(make_settings())
    calls = 0

    async def process(job: JobContext[BankSyncJobData]) -> JobResult:
        nonlocal calls
        calls += 1
        return JobResult(success=True)

    producer = bullmq.Queue(str(BANK), {"connection": redis_server.url, "prefix": key_prefix})
    try:
        raw = await producer.add("sync", {"userId": "u1", "syncType": "sometimes"},
                                 {"attempts": 5})
        qs.create_worker(BANK, process)
        info = await qs.wait_for_job(BANK, str(raw.id), timeout=10)
    finally:
        await producer.close()
        await qs.close()
    assert info.state == JobState.FAILED
    assert info.attempts_made == 1
    assert calls == 0
    assert info.failed_reason is not None
    assert "accountId" in info.failed_reason
    assert "syncType" in info.failed_reason


@pytest.fixture
def password_server() -> Iterator[RedisServer]:
    server = RedisServer(password="s3cret-pw").start()
    yield server
    server.cleanup()


async def test_wrong_password_fails_start_up_fast_without_leaking_it(
    password_server: RedisServer,
) -> None:
    url = f"redis://:wrong-pw@127.0.0.1:{password_server.port}/0"
    container = SharedContainer()
    container.config.override(QueuekitSettings(redis={"url": url}))
    started = time.monotonic()
    with pytest.raises(QueueUnavailableError) as caught:
        await start(container)
    assert time.monotonic() - started < 3
    message = str(caught.value)
    assert f"redis://:***@127.0.0.1:{password_server.port}/0" in message
    assert "wrong-pw" not in message
    assert "credentials" in message
    await stop(container)


async def test_unreachable_port_fails_start_up_fast() -> None:
    port = free_port()
    container = SharedContainer()
    container.config.override(QueuekitSettings(redis={"url": f"redis://:pw@127.0.0.1:{port}/0"}))
    started = time.monotonic()
    with pytest.raises(QueueUnavailableError, match=f"127.0.0.1:{port}") as caught:
        await start(container)
    assert time.monotonic() - started < 3
    assert ":pw@" not in str(caught.value)
    await stop(container)


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP server that accepts connections and never answers (a hung Redis)."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
                accepted.append(conn)
            except TimeoutError:
                continue
            except OSError:
                return

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield int(listener.getsockname()[1])
    stop.set()
    thread.join()
    for conn in accepted:
        conn.close()
    listener.close()


async def test_server_that_never_answers_fails_start_up_within_3_s(silent_server: int) -> None:
    container = SharedContainer()
    container.config.override(
        QueuekitSettings(redis={"url": f"redis://127.0.0.1:{silent_server}/0"}))
    started = time.monotonic()
    with pytest.raises(QueueUnavailableError, match="did not answer"):
        await start(container)
    assert time.monotonic() - started < 3
    await stop(container)


def our_clients(server: RedisServer) -> list[dict[str, str]]:
    with server.client() as client:
        me = client.client_id()
        return [c for c in client.client_list() if int(c["id"]) != me]


@pytest.fixture
def private_server() -> Iterator[RedisServer]:
    server = RedisServer().start()
    yield server
    server.cleanup()


async def test_shutdown_closes_workers_before_the_pool_and_leaves_no_connection(
    private_server: RedisServer, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="queuekit")
    app = ApplicationContainer()
    app.shared.config.override(QueuekitSettings(redis={"url": private_server.url}))
    started = asyncio.Event()
    release = asyncio.Event()

    async def slow_sync(job: JobContext[BankSyncJobData]) -> JobResult:
        started.set()
        await release.wait()
        return JobResult(success=True, message="finished during shutdown")

    app.plugins.override(PluginSet([Plugin("slow", [FunctionProcessor(BANK, slow_sync)])]))
    await start(app)
    qs: QueueService = await resolve(app.shared.queue_service)
    job = await qs.add_job(BANK, "sync", SYNC)
    await started.wait()
    assert our_clients(private_server)

    shutdown = asyncio.ensure_future(stop(app))
    await asyncio.sleep(0.1)  # shutdown is under way and must be waiting for the job
    assert not shutdown.done()
    release.set()
    await asyncio.wait_for(shutdown, timeout=10)

    # The job completed: the worker finished it while the pool was still open.
    check = await RedisQueueService.connect(
        QueuekitSettings(redis={"url": private_server.url}))
    try:
        info = await check.get_job(BANK, job.id)
    finally:
        await check.close()
    assert info is not None
    assert info.state == JobState.COMPLETED
    messages = [r.getMessage() for r in caplog.records]
    worker_closed = messages.index("worker for bank-sync closed")
    pool_closed = next(i for i, m in enumerate(messages)
                       if m.startswith("queue Redis connection") and m.endswith("closed"))
    assert worker_closed < pool_closed
    assert our_clients(private_server) == []


async def test_connection_refuses_old_policy_with_a_warning(
    make_settings: SettingsFactory, redis_server: RedisServer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    with redis_server.client() as client:
        client.config_set("maxmemory-policy", "allkeys-lru")
    try:
        connection = QueueConnection(make_settings().redis)
        with pytest.warns(RuntimeWarning, match="noeviction"):
            server = await connection.check()
        assert server.maxmemory_policy == "allkeys-lru"
        assert "noeviction" in caplog.text
        await connection.close()
    finally:
        with redis_server.client() as client:
            client.config_set("maxmemory-policy", "noeviction")


async def test_health_reports_redis_and_breaker(make_settings: SettingsFactory) -> None:
    qs = await RedisQueueService.connect(make_settings())
    try:
        report = await qs.health()
        assert report.ok
        assert report.redis == "ok"
        assert report.breaker == "closed"
        assert report.backend == "redis"
    finally:
        await qs.close()
    assert qs.connection.closed


def test_worker_outside_a_loop_is_refused(make_settings: SettingsFactory) -> None:
    from queuekit import WorkerError

    qs = RedisQueueService(make_settings())

    async def process(job: JobContext[BankSyncJobData]) -> JobResult:
        return JobResult(success=True)  # pragma: no cover

    with pytest.raises(WorkerError, match="running event loop"):
        qs.create_worker(BANK, process)
    asyncio.run(qs.close())

