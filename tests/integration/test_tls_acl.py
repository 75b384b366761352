"""TLS (``rediss://``) and ACL users against a TLS-only redis-server started here, with
certificates made by ``trustme``.

Every failure must come within 3 s, say what failed, and never show the password: not in
the error, not in any log line of the whole start-up.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from queuekit import (
    JobContext,
    JobResult,
    JobState,
    QueueName,
    QueueUnavailableError,
    RedisQueueService,
    load_settings,
)
from tests.support.tls_redis import ADMIN_PASSWORD, TlsRedisServer

PASSWORD = "pw-Xq7-" + uuid.uuid4().hex[:8]
NOTES = QueueName.NOTIFICATIONS
#: What BullMQ's scripts and queuekit's worker run, and nothing else.
BULLMQ_COMMANDS = ("-@all", "+@read", "+@write", "+@scripting", "+@connection",
                   "+@transaction", "+@blocking", "+@keyspace", "+info", "+client|setname",
                   "+client|getname", "+client|list", "+time", "+ping")


@pytest.fixture(scope="module")
def tls_server() -> Iterator[TlsRedisServer]:
    server = TlsRedisServer()
    try:
        server.start()
    except RuntimeError as exc:
        pytest.fail(f"cannot start the TLS redis-server: {exc}", pytrace=False)
    yield server
    server.stop()


@pytest.fixture
def prefix() -> str:
    return f"qk-tls-{uuid.uuid4().hex[:8]}"


def settings_for(server: TlsRedisServer, prefix: str, **redis: Any) -> Any:
    return load_settings(redis={"prefix": prefix, "startup_timeout": 2.5, **redis},
                         worker={"drain_delay": 0.5})


def assert_no_secret(caplog: pytest.LogCaptureFixture, *texts: str) -> None:
    for secret in (PASSWORD, ADMIN_PASSWORD):
        for record in caplog.records:
            assert secret not in record.getMessage(), record.getMessage()
            assert secret not in (record.exc_text or "")
        for text in texts:
            assert secret not in text


async def process(job: JobContext[Any]) -> JobResult:
    await job.update_progress(50)
    return JobResult(success=True, message="sent over TLS")


@pytest.mark.parametrize("engine", ["fast", "bullmq"])
async def test_an_acl_user_over_tls_runs_jobs(
    tls_server: TlsRedisServer, prefix: str, engine: str, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    tls_server.add_user("qk-worker", PASSWORD, f"~{prefix}:*", *BULLMQ_COMMANDS)
    settings = load_settings(
        redis={"url": tls_server.url("qk-worker", PASSWORD), "prefix": prefix,
               "ssl_ca_certs": tls_server.ca_file},
        worker={"drain_delay": 0.5, "engine": engine})
    service = await RedisQueueService.connect(settings)
    try:
        async with service.events(NOTES) as events:
            job = await service.add_job(NOTES, "send", {"userId": "u1", "type": "email",
                                                        "templateId": "t1"})
            service.create_worker(NOTES, process)
            info = await service.wait_for_job(NOTES, job.id, timeout=20)
            async for event in events:
                if event.job_id == job.id and event.type == "completed":
                    break
        assert await service.count_workers(NOTES) == 1
        health = await service.health()
    finally:
        await service.close()
    assert info.state == JobState.COMPLETED
    assert info.return_value == JobResult(success=True, message="sent over TLS")
    assert health.ok, health.reasons
    assert_no_secret(caplog, settings.redis.safe_url, repr(settings))


async def test_user_and_password_from_the_settings_with_a_bare_url(
    tls_server: TlsRedisServer, prefix: str, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    tls_server.add_user("qk-settings", PASSWORD, f"~{prefix}:*", *BULLMQ_COMMANDS)
    settings = settings_for(tls_server, prefix, url=tls_server.url(), username="qk-settings",
                            password=PASSWORD, ssl_ca_certs=tls_server.ca_file)
    service = await RedisQueueService.connect(settings)
    try:
        job = await service.add_job(NOTES, "send", {"userId": "u1", "type": "email",
                                                    "templateId": "t1"})
        assert (await service.get_job(NOTES, job.id)) is not None
    finally:
        await service.close()
    assert_no_secret(caplog, str(settings.redis), settings.model_dump_json())


async def fails_fast(settings: Any, caplog: pytest.LogCaptureFixture) -> str:
    caplog.set_level(logging.DEBUG)
    started = time.monotonic()
    with pytest.raises(QueueUnavailableError) as caught:
        await RedisQueueService.connect(settings)
    elapsed = time.monotonic() - started
    assert elapsed < 3.0, f"took {elapsed:.2f} s"
    message = str(caught.value)
    assert_no_secret(caplog, message, repr(caught.value))
    return message


async def test_the_wrong_ca_fails_fast_naming_the_certificate(
    tls_server: TlsRedisServer, prefix: str, caplog: pytest.LogCaptureFixture,
) -> None:
    tls_server.add_user("qk-ca", PASSWORD, f"~{prefix}:*", *BULLMQ_COMMANDS)
    message = await fails_fast(settings_for(
        tls_server, prefix, url=tls_server.url("qk-ca", PASSWORD),
        ssl_ca_certs=tls_server.other_ca_file), caplog)
    assert message.startswith(f"TLS certificate of Redis at {tls_server.url('qk-ca', '***')}"
                              " was not accepted")
    assert "redis.ssl_ca_certs" in message


async def test_a_wrong_password_fails_fast_naming_the_authentication(
    tls_server: TlsRedisServer, prefix: str, caplog: pytest.LogCaptureFixture,
) -> None:
    tls_server.add_user("qk-pass", "the-right-one", f"~{prefix}:*", *BULLMQ_COMMANDS)
    message = await fails_fast(settings_for(
        tls_server, prefix, url=tls_server.url("qk-pass", PASSWORD),
        ssl_ca_certs=tls_server.ca_file), caplog)
    assert message.startswith("authentication failed: Redis at "
                              f"{tls_server.url('qk-pass', '***')} refused user 'qk-pass'")


async def test_a_user_without_the_keys_fails_fast_naming_the_permission(
    tls_server: TlsRedisServer, prefix: str, caplog: pytest.LogCaptureFixture,
) -> None:
    tls_server.add_user("qk-other", PASSWORD, "~somebody-else:*", *BULLMQ_COMMANDS)
    message = await fails_fast(settings_for(
        tls_server, prefix, url=tls_server.url("qk-other", PASSWORD),
        ssl_ca_certs=tls_server.ca_file), caplog)
    assert message.startswith(f"no permission: Redis at {tls_server.url('qk-other', '***')} "
                              f"does not let user 'qk-other' access the keys under {prefix!r}")
    assert f"~{prefix}:*" in message


async def test_a_plain_connection_to_the_tls_port_fails_fast_naming_the_connection(
    tls_server: TlsRedisServer, prefix: str, caplog: pytest.LogCaptureFixture,
) -> None:
    message = await fails_fast(settings_for(
        tls_server, prefix, url=f"redis://:{PASSWORD}@127.0.0.1:{tls_server.port}/0",
        startup_timeout=1.0), caplog)
    assert f"redis://:***@127.0.0.1:{tls_server.port}/0" in message


def test_tls_files_without_tls_or_missing_are_configuration_errors(
    tls_server: TlsRedisServer,
) -> None:
    from queuekit import ConfigurationError

    with pytest.raises(ConfigurationError, match=r"ssl_ca_certs set, but redis://.* is not "
                                                 r"TLS: use a rediss:// url"):
        load_settings(redis={"url": "redis://127.0.0.1:6379/0",
                             "ssl_ca_certs": tls_server.ca_file})
    with pytest.raises(ConfigurationError, match="ssl_ca_certs: no such file"):
        load_settings(redis={"url": "rediss://127.0.0.1:6379/0",
                             "ssl_ca_certs": "/nonexistent/ca.pem"})
    with pytest.raises(ConfigurationError, match="ssl_certfile and ssl_keyfile go together"):
        load_settings(redis={"url": "rediss://127.0.0.1:6379/0",
                             "ssl_certfile": tls_server.client_cert_file})


@pytest.fixture(scope="module")
def mutual_tls_server() -> Iterator[TlsRedisServer]:
    server = TlsRedisServer(client_certs="yes")
    server.start()
    yield server
    server.stop()


async def test_a_server_that_requires_client_certificates(
    mutual_tls_server: TlsRedisServer, prefix: str, caplog: pytest.LogCaptureFixture,
) -> None:
    server = mutual_tls_server
    server.add_user("qk-mtls", PASSWORD, f"~{prefix}:*", *BULLMQ_COMMANDS)
    url = server.url("qk-mtls", PASSWORD)
    service = await RedisQueueService.connect(settings_for(
        server, prefix, url=url, ssl_ca_certs=server.ca_file,
        ssl_certfile=server.client_cert_file, ssl_keyfile=server.client_key_file))
    await service.close()
    message = await fails_fast(settings_for(server, prefix, url=url,
                                            ssl_ca_certs=server.ca_file), caplog)
    # The server refuses the handshake (TLS 1.2) or resets the connection right after
    # it (TLS 1.3): either way the message names the client certificate settings.
    masked = server.url("qk-mtls", "***")
    assert message.startswith((f"TLS handshake with Redis at {masked} failed",
                               f"cannot connect to Redis at {masked}"))
    assert "redis.ssl_certfile" in message


async def test_the_whole_container_start_up_with_a_wrong_password_logs_no_secret(
    tls_server: TlsRedisServer, prefix: str, caplog: pytest.LogCaptureFixture,
) -> None:
    from containers.host import open_host

    caplog.set_level(logging.DEBUG)
    settings = settings_for(tls_server, prefix, url=tls_server.url(), username="nobody",
                            password=PASSWORD, ssl_ca_certs=tls_server.ca_file)
    started = time.monotonic()
    with pytest.raises(QueueUnavailableError) as caught:
        async with open_host(settings):
            pass  # pragma: no cover - start-up fails
    assert time.monotonic() - started < 3.0
    assert str(caught.value).startswith("authentication failed")
    assert caplog.records  # the start-up did log (plugins, connection attempts)
    assert_no_secret(caplog, str(caught.value))
