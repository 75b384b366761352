"""``queuekit dashboard`` and ``queuekit demo --dashboard`` as real processes."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import sys
from pathlib import Path

import httpx
import pytest

QUEUEKIT = str(Path(sys.executable).with_name("queuekit"))
pytestmark = pytest.mark.timeout(90)


async def test_a_non_loopback_bind_without_a_token_refuses_to_start() -> None:
    env = {k: v for k, v in os.environ.items() if k != "QUEUEKIT_DASHBOARD_TOKEN"}
    process = await asyncio.create_subprocess_exec(
        QUEUEKIT, "dashboard", "--host", "0.0.0.0", "--port", "0", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    out, err = await asyncio.wait_for(process.communicate(), 60)
    assert process.returncode == 2
    assert "refuses to listen on '0.0.0.0' without a token" in err.decode()
    assert b"dashboard on" not in out


async def test_the_demo_opens_the_dashboard_on_its_in_memory_queues() -> None:
    env = {**os.environ, "QUEUEKIT_BACKEND": "memory"}
    process = await asyncio.create_subprocess_exec(
        QUEUEKIT, "demo", "--dashboard", "--port", "0", "--refresh", "0", env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        assert process.stdout is not None
        url = None
        while url is None:
            line = (await asyncio.wait_for(process.stdout.readline(), 60)).decode()
            assert line, "the demo exited before serving the dashboard"
            found = re.search(r"queuekit dashboard on (http://127\.0\.0\.1:\d+/)", line)
            url = found.group(1) if found else None
        async with httpx.AsyncClient() as client:
            overview = await client.get(url)
            assert overview.status_code == 200
            assert "backend: memory" in overview.text
            for queue in ("bank-sync", "notifications", "reports"):
                assert f'data-queue="{queue}"' in overview.text
            completed = await client.get(f"{url}queues/bank-sync?state=completed")
            assert 'data-job="' in completed.text  # the demo's finished syncs
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGINT)
        code = await asyncio.wait_for(process.wait(), 30)
    assert code == 130  # Ctrl-C, as for any interactive command
