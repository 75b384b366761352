"""``queuekit worker`` refuses bad configurations and an unreachable Redis: exit 2 with a
message that says what to fix."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from containers.cli import main
from tests.support.configs import SAMPLE_PLUGIN, write_config
from tests.support.redis_server import RedisServer, free_port


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["worker", *args])
    return code, capsys.readouterr().err


def test_unreachable_redis(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    config = write_config(tmp_path / "c.yaml", f"redis://:secret@127.0.0.1:{port}/0", "p",
                          [SAMPLE_PLUGIN])
    code, err = run(capsys, "--config", str(config))
    assert code == 2
    assert f"cannot connect to Redis at redis://:***@127.0.0.1:{port}/0" in err
    assert "secret" not in err


@pytest.mark.parametrize(
    ("plugins", "extra", "args", "message"),
    [
        ([SAMPLE_PLUGIN], {}, ["--queues", "nope,qk-sample"],
         "no plugin provides a processor for 'nope'"),
        ([SAMPLE_PLUGIN], {"worker": {"enabled": False}}, [], "worker.enabled is false"),
        ([], {}, [], "no processors to run"),
        (["no_such_plugin_module"], {}, [], "plugin 'no_such_plugin_module' (from the "
                                            "configuration's `plugins:`) cannot be imported"),
        (["queuekit.demo.services"], {}, [], "is not a queuekit plugin"),
    ],
)
def test_bad_configuration_is_reported_before_connecting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], plugins: list[str],
    extra: dict[str, object], args: list[str], message: str,
) -> None:
    # An unreachable Redis: the configuration error must come first.
    config = write_config(tmp_path / "c.yaml", f"redis://127.0.0.1:{free_port()}/0", "p",
                          plugins, **extra)
    code, err = run(capsys, "--config", str(config), *args)
    assert code == 2
    assert message in err
    assert "Redis" not in err


def test_unreadable_or_missing_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("worker: [unclosed\n")
    code, err = run(capsys, "--config", str(broken))
    assert code == 2
    assert f"cannot read {broken}" in err
    code, err = run(capsys, "--config", str(tmp_path / "missing.yaml"))
    assert code == 2
    assert "missing.yaml: no such file" in err
    invalid = write_config(tmp_path / "invalid.yaml", "redis://127.0.0.1:1/0", "p",
                           [SAMPLE_PLUGIN], worker={"concurrency": 0})
    code, err = run(capsys, "--config", str(invalid))
    assert code == 2
    assert "worker.concurrency" in err


def test_metrics_port_in_use(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                             redis_server: RedisServer, key_prefix: str) -> None:
    config = write_config(tmp_path / "c.yaml", redis_server.url, key_prefix, [SAMPLE_PLUGIN])
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, err = run(capsys, "--config", str(config), "--metrics-port", str(port),
                        "--metrics-host", "127.0.0.1")
    assert code == 2
    assert f"cannot serve metrics on 127.0.0.1:{port}" in err
    assert "--metrics-port" in err
