"""Redis ``INFO`` around a measurement: which commands clients sent, what they cost.

Redis counts the commands Lua scripts run as well as the ones clients send; the
classification here tells them apart, and the suite's own connection takes the snapshots.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
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


def snapshot_delta(before: RedisSnapshot, after: RedisSnapshot) -> RedisSnapshot:
    """What Redis did between two snapshots (the INFO that took ``before`` not counted)."""
    calls = {name: value - before.calls.get(name, 0) for name, value in after.calls.items()}
    calls["info"] = calls.get("info", 0) - 1  # the INFO that took `before` counts in `after`
    usec = {name: value - before.usec.get(name, 0) for name, value in after.usec.items()}
    return RedisSnapshot(calls=calls, usec=usec, cpu_s=after.cpu_s - before.cpu_s)


def summed(deltas: Iterable[RedisSnapshot]) -> RedisSnapshot:
    """The sum of several :func:`snapshot_delta` results."""
    calls: Counter[str] = Counter()
    usec: Counter[str] = Counter()
    cpu_s = 0.0
    for delta in deltas:
        calls.update(delta.calls)
        usec.update(delta.usec)
        cpu_s += delta.cpu_s
    return RedisSnapshot(calls=dict(calls), usec=dict(usec), cpu_s=cpu_s)


def per_job_calls(delta: RedisSnapshot, jobs: int) -> dict[str, float]:
    """Calls per job of each command in ``delta``."""
    return {name: calls / jobs for name, calls in sorted(delta.calls.items()) if calls > 0}


def redis_usec_per_job(delta: RedisSnapshot, jobs: int) -> float:
    """Microseconds per job that Redis spent executing what clients sent.

    Only client commands count (see :func:`is_client_command`): a script's time already
    includes the commands it ran, which commandstats lists again. Plain commands that a
    client sends directly (HGETALL of ``getJob`` ...) are left out: they cannot be told
    apart from the same command inside a script, and cost little next to the scripts.
    """
    total = sum(
        usec for name, usec in delta.usec.items() if is_client_command(name) and name != "info"
    )
    return total / jobs


def client_commands_per_job(per_job: Mapping[str, float]) -> float:
    """Commands per job that clients sent (the rest ran inside Lua scripts)."""
    return sum(value for name, value in per_job.items() if is_client_command(name))
