"""The operations commands' arguments and the memory backend (no Redis needed)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from containers.cli import main
from queuekit.cli import build_parser
from queuekit.cli.ops import read_settings
from queuekit.settings import CONFIG_ENV_VAR


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["worker", "--queues", " , "], "name at least one queue"),
        (["worker", "--concurrency", "0"], "must be >= 1, got 0"),
        (["worker", "--metrics-port", "70000"], "must be a TCP port"),
        (["jobs", "bank-sync", "--state", "finished"], "invalid choice: 'finished'"),
        (["stats", "--watch", "--count", "-1"], "must be >= 1"),
    ],
)
def test_bad_arguments_are_refused(args: list[str], message: str,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(args)
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_config_option_does_not_leak_into_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    first, second = tmp_path / "first.yaml", tmp_path / "second.yaml"
    first.write_text(yaml.safe_dump({"worker": {"concurrency": 3}}))
    second.write_text(yaml.safe_dump({"worker": {"concurrency": 7}}))
    monkeypatch.setenv(CONFIG_ENV_VAR, str(first))
    assert read_settings(str(second)).worker.concurrency == 7
    assert read_settings(None).worker.concurrency == 3
    monkeypatch.delenv(CONFIG_ENV_VAR)
    read_settings(str(second))
    assert CONFIG_ENV_VAR not in os.environ


def test_stats_watch_on_the_memory_backend(tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "memory.yaml"
    config.write_text(yaml.safe_dump({"backend": "memory", "plugins": []}))
    assert main(["stats", "reports", "--watch", "--count", "2", "--interval", "0",
                 "--config", str(config)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 8  # twice: time stamp, header, rule, one queue
    assert "(every 0 s; Ctrl-C stops)" in out[0]
    assert out[3].split() == ["reports", "0", "0", "0", "0", "0", "0", "0"]
