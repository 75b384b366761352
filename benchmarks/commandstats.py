"""Redis ``INFO`` around a measurement: which commands clients sent, what they cost.

Redis counts the commands Lua scripts run as well as the ones clients send; the
classification here tells them apart, and the suite's own connection takes the snapshots.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from redis.asyncio import Redis

CLIENT_COMMANDS: Final = frozenset(
    {
        "evalsha",
        "eval",
        "evalsha_ro",
        "eval_ro",
        "fcall",
        "fcall_ro",
        "bzpopmin",
        "bzpopmax",
        "bzmpop",
        "blpop",
        "brpop",
        "blmove",
        "blmpop",
        "brpoplpush",
        "xread",
        "multi",
        "exec",
        "discard",
        "watch",
        "unwatch",
        "ping",
        "hello",
        "select",
        "auth",
        "quit",
        "info",
    }
)
"""Commands only a client sends (Lua cannot call them, or BullMQ's scripts do not).
Commands that scripts run are counted by Redis too; ``client`` and ``script``
subcommands (``client|setname``, ``script|load``) also count as client commands."""


def is_client_command(name: str) -> bool:
    """Whether ``name`` (as in ``INFO commandstats``) was sent by a client."""
    return name in CLIENT_COMMANDS or name.split("|", 1)[0] in {"client", "script", "config"}


CommandStats = dict[str, int]


@dataclass(frozen=True)
class RedisSnapshot:
    """One ``INFO all``: command calls and their time, and the server's CPU time."""

    calls: CommandStats
    usec: CommandStats
    """Microseconds Redis spent in each command (a script's time includes its calls)."""
    cpu_s: float
    """``used_cpu_user + used_cpu_sys`` of the server process (seconds)."""


class SuiteRedis:
    """The suite's own connection: command statistics and clean-up."""

    def __init__(self, url: str) -> None:
        self.client = Redis.from_url(url, decode_responses=True, socket_connect_timeout=5.0)

    async def snapshot(self) -> RedisSnapshot:
        # One INFO for everything, so the INFO that `per_job_calls` discounts is the only one.
        info: Mapping[str, Any] = await self.client.info("all")
        stats = {
            name.removeprefix("cmdstat_"): value
            for name, value in info.items()
            if name.startswith("cmdstat_")
        }
        return RedisSnapshot(
            calls={name: int(value["calls"]) for name, value in stats.items()},
            usec={name: int(value["usec"]) for name, value in stats.items()},
            cpu_s=float(info.get("used_cpu_user", 0.0)) + float(info.get("used_cpu_sys", 0.0)),
        )

    async def delete_queue(self, queue: str) -> None:
        batch: list[str] = []
        async for key in self.client.scan_iter(match=f"*{queue}*", count=1000):
            batch.append(key)
            if len(batch) >= 1000:
                await self.client.unlink(*batch)
                batch.clear()
        if batch:
            await self.client.unlink(*batch)

    async def version(self) -> str:
        info: Mapping[str, Any] = await self.client.info("server")
        return str(info.get("redis_version", "?"))


def per_job_calls(before: CommandStats, after: CommandStats, jobs: int) -> dict[str, float]:
    delta = {name: calls - before.get(name, 0) for name, calls in after.items()}
    delta["info"] = delta.get("info", 0) - 1  # the INFO that took `before` counts in `after`
    return {name: calls / jobs for name, calls in sorted(delta.items()) if calls > 0}


def redis_usec_per_job(before: RedisSnapshot, after: RedisSnapshot, jobs: int) -> float:
    """Microseconds per job that Redis spent executing what clients sent.

    Only client commands count (see :func:`is_client_command`): a script's time already
    includes the commands it ran, which commandstats lists again. Plain commands that a
    client sends directly (HGETALL of ``getJob`` ...) are left out: they cannot be told
    apart from the same command inside a script, and cost little next to the scripts.
    """
    total = sum(
        usec - before.usec.get(name, 0)
        for name, usec in after.usec.items()
        if is_client_command(name) and name != "info"
    )
    return total / jobs


def client_commands_per_job(per_job: Mapping[str, float]) -> float:
    """Commands per job that clients sent (the rest ran inside Lua scripts)."""
    return sum(value for name, value in per_job.items() if is_client_command(name))
