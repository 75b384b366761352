"""The virtual clock, the demo command and its summary table."""

from __future__ import annotations

import pytest

from containers.cli import main
from queuekit.demo.run import DemoRow, format_table
from queuekit.testing import VirtualClock
from tests.support.redis_server import free_port


def test_virtual_clock_follows_wall_time_and_jumps() -> None:
    clock = VirtualClock()
    before = clock.now_ms()
    clock.advance(5000)
    assert clock.now_ms() - before >= 5000
    assert clock.skipped_ms == 5000
    with pytest.raises(ValueError, match="forward"):
        clock.advance(-1)


def test_demo_runs_in_memory_and_prints_the_summary(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert "in-memory backend" in out
    assert "7 of 7 jobs completed" in out
    assert "(retried)" in out
    assert "delayed 1500 ms" in out
    for queue in ("bank-sync", "notifications", "reports"):
        assert queue in out


def test_demo_on_unreachable_redis_exits_with_a_clear_error(
    capsys: pytest.CaptureFixture[str],
) -> None:
    port = free_port()
    assert main(["demo", "--redis-url", f"redis://:pw@127.0.0.1:{port}/0"]) == 2
    err = capsys.readouterr().err
    assert f"127.0.0.1:{port}" in err
    assert ":pw@" not in err


def test_format_table_aligns_columns() -> None:
    table = format_table([DemoRow("a#1", "q", "completed", 1, 5, "ok"),
                          DemoRow("longer#2", "queue", "failed", 3, None, "")])
    lines = table.splitlines()
    assert lines[0].startswith("job ")
    assert set(lines[1]) <= {"-", " "}
    assert lines[3].split()[:5] == ["longer#2", "queue", "failed", "3", "-"]
