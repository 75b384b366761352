"""``queuekit demo --redis-url`` on the test server."""

from __future__ import annotations

import pytest

from containers.cli import main
from tests.support.redis_server import RedisServer


def test_demo_on_redis(redis_server: RedisServer, capsys: pytest.CaptureFixture[str],
                       monkeypatch: pytest.MonkeyPatch, key_prefix: str) -> None:
    monkeypatch.setenv("QUEUEKIT_REDIS__PREFIX", key_prefix)
    assert main(["demo", "--redis-url", redis_server.url]) == 0
    out = capsys.readouterr().out
    assert "7 of 7 jobs completed" in out
    assert "(retried)" in out
