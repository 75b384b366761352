"""Helpers of the events reader's tests (``wait_for_job`` on Redis): which connections
block in XREAD, and a processor that holds its jobs until released."""

from __future__ import annotations

import asyncio
from typing import Any

from queuekit import BankSyncJobData, JobContext, JobResult, Processor
from tests.support.redis_server import RedisServer


def reader_connections(server: RedisServer) -> list[str]:
    """Ids of the connections blocked in XREAD right now (the events readers; between
    two XREADs a reader's last command is its final reads' script)."""
    with server.client() as client:
        listed: list[dict[str, Any]] = client.client_list()
    return [str(c["id"]) for c in listed
            if c.get("cmd") == "xread" and "b" in str(c.get("flags"))]


def blocked_readers(server: RedisServer) -> int:
    """Connections blocked in XREAD right now (the events readers)."""
    return len(reader_connections(server))


def held_until_released() -> tuple[asyncio.Event, Processor]:
    """A processor whose jobs finish once the returned event is set."""
    release = asyncio.Event()

    async def held(job: JobContext[BankSyncJobData]) -> JobResult:
        await release.wait()
        return JobResult(success=True)

    return release, held
