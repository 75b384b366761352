"""``queuekit schedules [QUEUE]`` (a table, or ``--json``) and
``queuekit schedules remove QUEUE ID``.

Listing reads the store only: it does not upsert the declared schedules (``queuekit
worker`` and the application's start do). Exit codes: 0, 1 when ``remove`` found no such
scheduler, 2 bad configuration or unreachable Redis.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
from typing import Any

from queuekit.cli.ops import config_option, read_settings
from queuekit.schedules import JobSchedulerInfo

#: Exit code of ``remove`` when there was no such scheduler.
NOT_FOUND = 1


def _when(ms: int | None) -> str:
    if ms is None:
        return "-"
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _row(info: JobSchedulerInfo) -> dict[str, Any]:
    return {"queue": info.queue, "id": info.id, "name": info.name, "every": info.every,
            "pattern": info.pattern, "tz": info.tz, "limit": info.limit,
            "iterations": info.iteration_count, "next_run_at": info.next_run_at,
            "next_run": (dt.datetime.fromtimestamp(info.next_run_at / 1000, dt.UTC).isoformat()
                         if info.next_run_at is not None else None)}


def format_schedules(infos: list[JobSchedulerInfo]) -> str:
    """A table: queue, id, every/pattern, tz, next run, iterations."""
    header = ("QUEUE", "ID", "EVERY/PATTERN", "TZ", "NEXT RUN", "ITERATIONS")
    rows = [(i.queue, i.id, f"{i.every} ms" if i.every is not None else str(i.pattern),
             i.tz or "-", _when(i.next_run_at),
             f"{i.iteration_count}" + (f"/{i.limit}" if i.limit is not None else ""))
            for i in infos]
    widths = [max(len(str(r[c])) for r in [header, *rows]) for c in range(len(header))]
    return "\n".join("  ".join(str(v).ljust(w) for v, w in zip(r, widths, strict=True)).rstrip()
                     for r in [header, *rows])


async def _list(args: argparse.Namespace, queue: str | None) -> int:
    async with args.open_host(read_settings(args.config)) as host:
        queues = [queue] if queue else await host.service.list_queues()
        infos = [info for q in queues for info in await host.service.get_job_schedulers(q)]
    if args.json:
        print(json.dumps([_row(info) for info in infos], indent=2))
    elif not infos:
        print(f"no job schedulers on {queue}" if queue else "no job schedulers")
    else:
        print(format_schedules(infos))
    return 0


async def _remove(args: argparse.Namespace, queue: str, scheduler_id: str) -> int:
    async with args.open_host(read_settings(args.config)) as host:
        removed = await host.service.remove_job_scheduler(queue, scheduler_id)
    if args.json:
        print(json.dumps({"queue": queue, "id": scheduler_id, "removed": removed}))
    else:
        print(f"job scheduler {scheduler_id} of {queue} "
              f"{'removed' if removed else 'not found'}")
    return 0 if removed else NOT_FOUND


def _schedules(args: argparse.Namespace) -> int:
    words: list[str] = args.words
    if words and words[0] == "remove":
        if len(words) != 3:
            args.parser.error("usage: queuekit schedules remove QUEUE ID")
        return asyncio.run(_remove(args, words[1], words[2]))
    if len(words) > 1:
        args.parser.error("usage: queuekit schedules [QUEUE] | schedules remove QUEUE ID")
    return asyncio.run(_list(args, words[0] if words else None))


def add_commands(sub: Any) -> None:
    """Add ``schedules`` to ``sub`` (the parser's sub-parsers)."""
    schedules = sub.add_parser(
        "schedules", parents=[config_option()],
        help="list job schedulers ([QUEUE]) or remove one (remove QUEUE ID)",
        description="queuekit schedules [QUEUE] lists job schedulers (every queue when "
                    "none is named); queuekit schedules remove QUEUE ID removes one and its "
                    "pending run.")
    schedules.add_argument("words", nargs="*", metavar="QUEUE | remove QUEUE ID")
    schedules.add_argument("--json", action="store_true", help="print JSON")
    schedules.set_defaults(func=_schedules, parser=schedules)
