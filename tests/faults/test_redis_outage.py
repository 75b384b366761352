"""Redis faults: a restart under load loses no accepted job and workers resume by
themselves; while Redis is down callers get ``QueueUnavailableError`` and, once the breaker
is open, fail fast without touching the network."""

from __future__ import annotations

import asyncio
import signal
import socket
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import pytest

from queuekit import (
    CircuitOpenError,
    JobContext,
    JobResult,
    JobState,
    PayloadValidationError,
    QueueUnavailableError,
    RedisQueueService,
)
from tests.conftest import SettingsFactory
from tests.faults.conftest import KEEP_ALL, ServiceFactory, SpawnWorker, worker_options
from tests.faults.worker_proc import FAULTS, FaultJobData
from tests.support.redis_server import RedisServer
from tests.support.waiting import eventually

OwnRedis = Callable[..., RedisServer]
DURABLE = ("--appendonly", "yes", "--appendfsync", "always")


def work(label: str, seconds: float = 0.2) -> FaultJobData:
    return FaultJobData(label=label, seconds=seconds)


async def states(qs: RedisQueueService, ids: list[str]) -> dict[str, int]:
    """How many of ``ids`` are in each state."""
    found: dict[str, int] = defaultdict(int)
    for job_id in ids:
        info = await qs.get_job(FAULTS, job_id)
        found["missing" if info is None else str(info.state)] += 1
    return dict(found)


async def test_redis_restart_under_load_loses_no_accepted_job(
    own_redis: OwnRedis, make_settings: SettingsFactory, faults_service: ServiceFactory,
    spawn_worker: SpawnWorker, engine: str,
) -> None:
    server = own_redis(*DURABLE)
    with server.client() as admin:
        assert admin.config_get("appendfsync") == {"appendfsync": "always"}
        assert admin.config_get("appendonly") == {"appendonly": "yes"}
    settings = make_settings(
        redis={"url": server.url},
        worker=worker_options(engine, lock_duration=3000, stalled_interval=1000),
        jobs={**KEEP_ALL, "attempts": 5, "backoff": {"type": "fixed", "delay": 200}},
        breaker={"fail_max": 3, "reset_timeout": 0.5},
    )
    qs = await faults_service(settings)  # adds jobs
    reader = await faults_service(settings)  # reads them back, with its own breaker
    probe = await faults_service(settings)  # stays idle (its breaker closed) until Redis is back
    workers = [spawn_worker(settings, concurrency=5) for _ in range(2)]

    accepted: list[str] = []
    errors: dict[str, list[Exception]] = defaultdict(list)
    stop = asyncio.Event()

    async def produce() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            try:
                if n % 2:
                    accepted.append((await qs.add_job(FAULTS, "work", work(f"a{n}"))).id)
                else:
                    jobs = await qs.add_jobs(FAULTS, [("work", work(f"b{n}-{k}"))
                                                      for k in range(2)])
                    accepted.extend(job.id for job in jobs)
            except QueueUnavailableError as exc:  # anything else fails the test
                errors["add_job" if n % 2 else "add_jobs"].append(exc)
            await asyncio.sleep(0.02)

    async def read() -> None:
        while not stop.is_set():
            for name, call in (("get_job_counts", lambda: reader.get_job_counts(FAULTS)),
                               ("get_job", lambda: reader.get_job(FAULTS, accepted[-1]))):
                try:
                    await call()
                except QueueUnavailableError as exc:
                    errors[name].append(exc)
            await asyncio.sleep(0.02)

    producer = asyncio.ensure_future(produce())
    try:
        await eventually(lambda: qs.get_job_counts(FAULTS), lambda c: c["completed"] >= 10,
                         timeout=20)
        reading = asyncio.ensure_future(read())
        try:
            server.stop(signal.SIGKILL)

            async def seen() -> dict[str, list[Exception]]:
                return errors

            # Every way in failed with our error, and the breaker opened at some point.
            await eventually(seen, lambda e: len(e) == 4 and any(
                isinstance(x, CircuitOpenError) for xs in e.values() for x in xs), timeout=10)
            server.start()
            back = time.monotonic()
            probe_job = await probe.add_job(FAULTS, "probe", work("probe", 0), {"lifo": True})
            probe_info = await probe.wait_for_job(FAULTS, probe_job.id, timeout=20)
            resumed = time.monotonic() - back
            after = len(accepted)

            async def added() -> int:
                return len(accepted)

            await eventually(added, lambda n: n >= after + 10, timeout=10)
        finally:
            stop.set()
            await reading
    finally:
        stop.set()
        await producer

    assert probe_info.state == JobState.COMPLETED
    # Workers notice Redis is back on their next fetch: run_retry_delay (1 s) after their
    # last connection error; 5 s is the promise, with room for a loaded machine.
    assert resumed < 5, resumed
    # Every job whose id a caller got is completed: none lost to the restart.
    final = await eventually(lambda: states(qs, accepted),
                             lambda s: s.get("completed") == len(accepted), timeout=40)
    assert final == {"completed": len(accepted)}
    for worker in workers:
        assert worker.returncode is None, worker.log_tail()
        worker.signal(signal.SIGTERM)
    for worker in workers:
        assert await worker.wait(timeout=15) == 0, worker.log_tail()


@pytest.fixture
def listener() -> Iterator[Callable[[int], socket.socket]]:
    """Listens on a port (where a stopped Redis was) to catch any connection attempt."""
    sockets: list[socket.socket] = []

    def listen(port: int) -> socket.socket:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))
        sock.listen(16)
        sock.setblocking(False)
        sockets.append(sock)
        return sock

    yield listen
    for sock in sockets:
        sock.close()


def connection_attempts(sock: socket.socket) -> int:
    """Connections the kernel completed on ``sock`` (accepted here, then closed)."""
    count = 0
    while True:
        try:
            conn, _ = sock.accept()
        except BlockingIOError:
            return count
        conn.close()
        count += 1


async def test_breaker_fails_fast_while_redis_is_down_and_closes_when_it_is_back(
    own_redis: OwnRedis, make_settings: SettingsFactory, faults_service: ServiceFactory,
    listener: Callable[[int], socket.socket],
) -> None:
    server = own_redis(*DURABLE)
    settings = make_settings(redis={"url": server.url, "socket_timeout": 1.0},
                             breaker={"fail_max": 6, "reset_timeout": 2.0})
    qs = await faults_service(settings)
    breaker = qs.breaker
    job = await qs.add_job(FAULTS, "before", work("before"))
    server.stop(signal.SIGKILL)

    # A bad payload is the caller's fault, not Redis's: refused, and not counted.
    with pytest.raises(PayloadValidationError):
        await qs.add_job(FAULTS, "bad", {"label": ""})
    assert (breaker.state, breaker.fail_counter) == ("closed", 0)

    calls: dict[str, Callable[[], Awaitable[Any]]] = {
        "add_job": lambda: qs.add_job(FAULTS, "during", work("during")),
        "add_jobs": lambda: qs.add_jobs(FAULTS, [("during", work("during"))]),
        "get_job": lambda: qs.get_job(FAULTS, job.id),
        "get_job_counts": lambda: qs.get_job_counts(FAULTS),
    }
    # Each way in reaches for Redis and fails with our error, naming the server.
    for name, call in calls.items():
        with pytest.raises(QueueUnavailableError, match=f"127.0.0.1:{server.port}") as caught:
            await call()
        assert not isinstance(caught.value, CircuitOpenError), name
    for _ in range(settings.breaker.fail_max):
        if breaker.state == "open":
            break
        with pytest.raises(QueueUnavailableError):
            await qs.get_job_counts(FAULTS)
    assert breaker.state == "open"
    # Open: every call fails fast with CircuitOpenError (a QueueUnavailableError) ...
    for call in calls.values():
        with pytest.raises(CircuitOpenError, match="circuit breaker is open"):
            await call()
    with pytest.raises(PayloadValidationError):
        await qs.add_job(FAULTS, "bad", {"label": ""})

    # ... without touching the network: anything that tried to connect would reach this.
    sock = listener(server.port)
    timings = []
    for n in range(100):
        began = time.perf_counter()
        try:
            await qs.add_job(FAULTS, "fast-fail", work(f"f{n}"))
        except CircuitOpenError:
            timings.append(time.perf_counter() - began)
    assert len(timings) == 100
    assert connection_attempts(sock) == 0
    sock.close()
    p99 = sorted(timings)[98]
    # Validation plus a state check; 5 ms leaves room for a loaded CI machine.
    assert p99 < 0.005, f"p99 {p99 * 1000:.2f} ms"

    report = await qs.health()
    assert not report.ok
    assert report.breaker == "open"
    assert report.redis != "ok" and str(server.port) in report.redis

    server.start()

    async def state() -> str:
        return breaker.state

    await eventually(state, lambda s: s == "half-open", timeout=settings.breaker.reset_timeout
                     + 2)
    # Half-open: exactly one trial call goes to Redis; the concurrent others fail fast.
    outcomes = await asyncio.gather(*(qs.get_job_counts(FAULTS) for _ in range(10)),
                                    return_exceptions=True)
    assert sum(not isinstance(o, BaseException) for o in outcomes) == 1, outcomes
    assert all(isinstance(o, CircuitOpenError) for o in outcomes
               if isinstance(o, BaseException)), outcomes
    assert breaker.state == "closed"
    after = await qs.add_job(FAULTS, "after", work("after"))
    assert await qs.get_job(FAULTS, after.id) is not None
    report = await qs.health()
    assert (report.ok, report.breaker, report.redis) == (True, "closed", "ok")


async def test_failed_adds_alone_open_the_breaker_and_half_open_admits_one_add(
    own_redis: OwnRedis, make_settings: SettingsFactory, faults_service: ServiceFactory,
    request: pytest.FixtureRequest,
) -> None:
    server = own_redis(*DURABLE)
    settings = make_settings(redis={"url": server.url},
                             breaker={"fail_max": 3, "reset_timeout": 1.0})
    qs = await faults_service(settings)
    await qs.add_job(FAULTS, "before", work("before"))
    server.stop(signal.SIGKILL)
    for n in range(settings.breaker.fail_max):
        with pytest.raises(QueueUnavailableError) as caught:
            await qs.add_job(FAULTS, "during", work(f"d{n}"))
        assert not isinstance(caught.value, CircuitOpenError)
    with pytest.raises(CircuitOpenError):
        await qs.add_job(FAULTS, "during", work("open"))

    server.start()

    async def state() -> str:
        return qs.breaker.state

    await eventually(state, lambda s: s == "half-open", timeout=settings.breaker.reset_timeout
                     + 2)
    outcomes = await asyncio.gather(
        *(qs.add_job(FAULTS, "trial", work(f"t{n}")) for n in range(10)),
        return_exceptions=True)
    assert sum(not isinstance(o, BaseException) for o in outcomes) == 1, outcomes


async def test_fast_worker_survives_an_error_answer_and_resumes(
    faults_service: ServiceFactory, caplog: pytest.LogCaptureFixture,
) -> None:
    """Redis answering with an error (not a dropped connection) must not stop the worker."""
    from queuekit.redis.fast_engine import FastWorker

    qs = await faults_service(worker={"run_retry_delay": 100, "engine": "fast"})
    done = asyncio.Event()

    async def process(job: JobContext[Any]) -> JobResult:
        done.set()
        return JobResult(success=True)

    worker = qs.create_worker(FAULTS, process)
    assert isinstance(worker, FastWorker)
    script = worker._commands["moveToActive"]
    original, good_sha = script.script, script.sha
    # An unknown sha makes the worker load the script again; this body answers an error.
    script.script, script.sha = "return redis.error_reply('ERR simulated')", "0" * 40
    failure = "fetching a job failed (simulated)"
    await eventually(lambda: asyncio.sleep(0, caplog.text.count(failure)),
                     lambda seen: seen >= 2, timeout=5)
    assert worker.running
    script.script, script.sha = original, good_sha
    job = await qs.add_job(FAULTS, "after", work("after"))
    await asyncio.wait_for(done.wait(), timeout=10)
    assert (await qs.wait_for_job(FAULTS, job.id, timeout=10)).state == "completed"
