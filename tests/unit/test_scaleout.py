"""Unit checks of the scale-out pieces: sync adaptation, pool binding, settings, the
supervisor's bookkeeping and the start-up error wording (no Redis, no processes)."""

from __future__ import annotations

import signal
import ssl
import time
from pathlib import Path
from typing import Any

import pytest
from redis.exceptions import AuthenticationError, ConnectionError, NoPermissionError

from queuekit import ConfigurationError, JobContext, JobResult, load_settings
from queuekit.cli import build_parser
from queuekit.offload import SyncPool, ThreadSyncPool, make_pool
from queuekit.processors import (
    SyncAdapter,
    WorkerHost,
    as_async,
    bind_pool,
    observe,
    same_processor,
)
from queuekit.redis.access import unavailable
from queuekit.redis.connection import connection_options
from queuekit.runtime.runner import WorkerOptions
from queuekit.runtime.supervisor import (
    Supervisor,
    SupervisorOptions,
    cpu_count,
    describe_exit,
)


def plain(job: JobContext[Any]) -> JobResult:
    return JobResult(success=True)


async def coroutine(job: JobContext[Any]) -> JobResult:
    return JobResult(success=True)


class PlainHost(WorkerHost[Any]):
    queue = "reports"

    def process(self, job: JobContext[Any]) -> JobResult:
        return JobResult(success=True)


def test_as_async_wraps_plain_functions_only() -> None:
    assert as_async(coroutine) is coroutine
    adapted = as_async(plain)
    assert isinstance(adapted, SyncAdapter)
    assert adapted.function is plain
    host = PlainHost()
    assert as_async(host) is host.as_processor()
    assert same_processor(adapted, plain)
    assert not same_processor(adapted, coroutine)


def test_bind_pool_reaches_through_observe_and_makes_one_pool() -> None:
    made: list[SyncPool] = []

    def make() -> SyncPool:
        made.append(ThreadSyncPool("reports", 1))
        return made[-1]

    observed = observe(plain, [object()])  # type: ignore[list-item]
    pool = bind_pool(observed, make)
    assert made == [pool]
    assert observed.__wrapped__.pool is pool  # type: ignore[attr-defined]
    host_processor = PlainHost().as_processor()
    assert bind_pool(host_processor, make) is made[-1]
    assert bind_pool(coroutine, make) is None  # nothing off the loop: no pool
    assert len(made) == 2
    for each in made:
        each.close()


def test_make_pool_sizes() -> None:
    pool = make_pool("process", "reports", 64)
    try:
        assert pool.kind == "process"
        assert pool.size <= cpu_count()
    finally:
        pool.close()


def test_sync_pool_settings_per_queue() -> None:
    worker = load_settings(worker={"sync_pool": "thread",
                                   "queue_sync_pool": {"reports": "process"}}).worker
    assert worker.sync_pool_for("reports") == "process"
    assert worker.sync_pool_for("notifications") == "thread"
    with pytest.raises(ConfigurationError, match="sync_pool"):
        load_settings(worker={"sync_pool": "fork"})


def test_connection_options_carry_tls_and_settings_credentials(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("x")
    redis = load_settings(redis={"url": "rediss://h:6380/0", "ssl_ca_certs": str(ca),
                                 "username": "qk", "password": "s3cret"}).redis
    assert connection_options(redis) == {"ssl_cert_reqs": "required",
                                         "ssl_ca_certs": str(ca), "username": "qk",
                                         "password": "s3cret"}
    plain_tcp = load_settings(redis={"url": "redis://:pw@h:6379/0"}).redis
    assert connection_options(plain_tcp) == {}
    assert "pw" not in repr(plain_tcp)
    assert load_settings(redis={"tls": True}).redis.uses_tls


def test_start_up_errors_say_what_failed_and_hide_the_password() -> None:
    redis = load_settings(redis={"url": "rediss://qk:s3cret@h:6380/0", "prefix": "jobs"}).redis
    url = redis.safe_url
    cert = ConnectionError("Error 1 connecting: [SSL: CERTIFICATE_VERIFY_FAILED] nope")
    cert.__context__ = ssl.SSLCertVerificationError("verify failed")
    cases = {
        "TLS certificate of Redis at rediss://qk:***@h:6380/0": cert,
        "authentication failed: Redis at rediss://qk:***@h:6380/0 refused user 'qk'":
            AuthenticationError("invalid username-password pair"),
        "no permission: Redis at rediss://qk:***@h:6380/0 does not let user 'qk' access "
        "the keys under 'jobs'":
            NoPermissionError("this user has no permissions to access one of the keys"),
        "cannot connect to Redis at rediss://qk:***@h:6380/0": ConnectionError("reset"),
    }
    for start, error in cases.items():
        message = str(unavailable(error, redis, url))
        assert message.startswith(start), message
        assert "s3cret" not in message


def test_describe_exit() -> None:
    assert describe_exit(3) == "exit code 3"
    assert describe_exit(-signal.SIGKILL) == "killed by SIGKILL"
    assert describe_exit(None) == "no exit code"


class _Dead:
    pid = 4242
    exitcode = 1
    sentinel = -1

    def join(self, timeout: float | None = None) -> None:
        pass


def test_restart_back_off_doubles_and_a_crash_loop_gives_up() -> None:
    supervisor = Supervisor(load_settings(), lambda *a, **k: None,  # type: ignore[arg-type]
                            WorkerOptions(), SupervisorOptions(processes=1, max_restarts=3,
                                                               backoff=0.5, backoff_cap=1.5))
    child = supervisor._children[0]
    delays = []
    for _ in range(3):
        child.process = _Dead()
        assert supervisor._exited(child) is None
        assert child.restart_at is not None
        delays.append(child.restart_at - time.monotonic())
    # 0.5 s, doubled per recent exit, capped at 1.5 s (0.1 s of slack for a slow machine).
    assert delays == pytest.approx([0.5, 1.0, 1.5], abs=0.1)
    child.process = _Dead()
    failure = supervisor._exited(child)
    assert failure is not None
    assert "4 exits within 60 s is more than --max-restarts 3: giving up" in str(failure)
    with pytest.raises(ConfigurationError, match="--processes must be >= 1"):
        Supervisor(load_settings(), lambda *a, **k: None,  # type: ignore[arg-type]
                   WorkerOptions(), SupervisorOptions(processes=0))


def test_processes_option() -> None:
    parser = build_parser()
    assert parser.parse_args(["worker", "--processes", "auto"]).processes == cpu_count()
    assert parser.parse_args(["worker", "--processes", "3"]).processes == 3
    assert parser.parse_args(["worker"]).processes == 1
    with pytest.raises(SystemExit):
        parser.parse_args(["worker", "--processes", "0"])
