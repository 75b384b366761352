"""Fixtures of the fault tests: worker processes and Redis servers that the test owns.

Every process a test starts is ended in the fixture's teardown, by its own pid, even
when the test fails; its log is attached to the test's captured log.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import IO, Any, get_args

import pytest

from queuekit import QueuekitSettings, RedisQueueService
from queuekit.settings import WorkerSettings
from tests.conftest import SettingsFactory
from tests.faults.worker_proc import FAULTS, registry, runs_key
from tests.support.redis_server import RedisServer

ROOT = Path(__file__).resolve().parents[2]
log = logging.getLogger("tests.faults")

#: Job retention for these tests: keep every finished job readable.
KEEP_ALL = {"remove_on_complete": {"count": 10_000}, "remove_on_fail": {"count": 10_000}}

#: Worker settings a worker process receives from the test, as QUEUEKIT_WORKER__*.
_WORKER_FIELDS = ("lock_duration", "stalled_interval", "max_stalled_count",
                  "shutdown_timeout", "drain_delay", "run_retry_delay", "engine")


class WorkerProcess:
    """One ``python -m tests.faults.worker_proc`` process."""

    def __init__(self, settings: QueuekitSettings, concurrency: int, log_path: Path) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith("QUEUEKIT_")}
        assert settings.redis.url is not None
        env["QUEUEKIT_REDIS__URL"] = settings.redis.url
        env["QUEUEKIT_REDIS__PREFIX"] = settings.redis.prefix
        for name in _WORKER_FIELDS:
            if name in WorkerSettings.model_fields:
                env[f"QUEUEKIT_WORKER__{name.upper()}"] = str(getattr(settings.worker, name))
        self.log_path = log_path
        self._log: IO[bytes] = log_path.open("wb")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.faults.worker_proc", "--concurrency",
             str(concurrency)],
            cwd=ROOT, env=env, stdout=self._log, stderr=subprocess.STDOUT,
        )

    @property
    def pid(self) -> int:
        """The process id."""
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        """None while it runs; the exit status (negative: killed by that signal) after."""
        return self.process.poll()

    def signal(self, sig: int) -> None:
        """Send ``sig`` to this process only."""
        if self.process.poll() is None:
            os.kill(self.process.pid, sig)

    async def wait(self, timeout: float) -> int:
        """The exit status, once the process has exited; AssertionError after ``timeout``."""
        deadline = time.monotonic() + timeout
        while (code := self.process.poll()) is None:
            if time.monotonic() > deadline:
                raise AssertionError(f"worker process {self.pid} still runs after {timeout} s")
            await asyncio.sleep(0.01)
        return code

    def stop(self) -> None:
        """Teardown: SIGTERM, then SIGKILL if it does not exit; close the log."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.process.pid, signal.SIGKILL)
                self.process.wait(10)
        self._log.close()

    def log_tail(self, chars: int = 4000) -> str:
        """The end of what the process wrote."""
        return self.log_path.read_text(errors="replace")[-chars:]


SpawnWorker = Callable[..., WorkerProcess]
ServiceFactory = Callable[..., Awaitable[RedisQueueService]]


def _engines() -> list[str]:
    field = WorkerSettings.model_fields.get("engine")
    return [str(e) for e in get_args(field.annotation)] if field is not None else ["bullmq"]


@pytest.fixture(params=_engines())
def engine(request: pytest.FixtureRequest) -> str:
    """Every worker engine the settings offer must keep the guarantees."""
    return str(request.param)


def worker_options(engine: str, **fields: Any) -> dict[str, Any]:
    """``worker`` settings for a test: ``fields`` on ``engine``."""
    if "engine" in WorkerSettings.model_fields:
        fields["engine"] = engine
    return fields


@pytest.fixture
def spawn_worker(tmp_path: Path) -> Iterator[SpawnWorker]:
    """Starts worker processes; stops every one of them (by pid) at the end."""
    started: list[WorkerProcess] = []

    def spawn(settings: QueuekitSettings, concurrency: int = 1) -> WorkerProcess:
        worker = WorkerProcess(settings, concurrency, tmp_path / f"worker-{len(started)}.log")
        started.append(worker)
        return worker

    yield spawn
    for worker in started:
        worker.stop()
        log.info("worker %d exited %s; its log:\n%s", worker.pid, worker.returncode,
                 worker.log_tail())


@pytest.fixture
def own_redis() -> Iterator[Callable[..., RedisServer]]:
    """Starts private redis-servers that a test may stop and restart; cleans them up."""
    servers: list[RedisServer] = []

    def start(*extra_args: str) -> RedisServer:
        server = RedisServer(extra_args=tuple(extra_args))
        servers.append(server)
        return server.start()

    yield start
    for server in servers:
        server.cleanup()


@pytest.fixture
async def faults_service(make_settings: SettingsFactory) -> AsyncIterator[ServiceFactory]:
    """Builds started services with the ``faults`` queue registered; closes them at the end."""
    made: list[RedisQueueService] = []

    async def build(settings: QueuekitSettings | None = None,
                    **overrides: Any) -> RedisQueueService:
        service = await RedisQueueService.connect(settings or make_settings(**overrides),
                                                  registry())
        made.append(service)
        return service

    yield build
    for service in made:
        await service.close()


async def worker_connections(service: RedisQueueService) -> int:
    """Connections that bullmq workers of ``faults`` hold (bullmq's own worker listing)."""
    workers: list[Any] = await service.get_queue(FAULTS).get_workers()
    return len(workers)


async def runs(service: RedisQueueService, job_id: str) -> int:
    """How many times ``job_id`` has started running, in any worker process."""
    value = await service.connection.client.get(runs_key(service.prefix, job_id))
    return int(value or 0)
