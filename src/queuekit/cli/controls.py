"""The queue-control commands: ``pause``, ``resume``, ``clean`` and ``remove``.

Each opens a host for the configuration (``--config``; ``QUEUEKIT_*`` override it) and
calls the matching :class:`~queuekit.service.QueueService` method. Arguments are checked
before anything is opened: a bad one exits 2 naming the option, and nothing is written.
Exit codes: 0 done, 1 ``remove`` found no such job, 2 bad input, configuration or Redis.
"""

from __future__ import annotations

import argparse
import asyncio
import re
from typing import Any

from queuekit.cli.ops import config_option, read_settings
from queuekit.controls import CLEANABLE_STATES
from queuekit.jobs import JobState

#: Exit code of ``remove`` when the job does not exist.
NOT_FOUND = 1

_DURATION = re.compile(r"^\s*(\d+)\s*(ms|s|m|h|d|w)?\s*$")
_UNIT_MS = {"ms": 1, "s": 1000, "m": 60_000, "h": 3_600_000, "d": 86_400_000,
            "w": 604_800_000}


def parse_duration(value: str) -> int:
    """``1h``, ``30m``, ``45s``, ``500ms``, ``2d``, ``1w`` (or a plain number of
    milliseconds) as milliseconds."""
    match = _DURATION.match(value)
    if match is None:
        raise argparse.ArgumentTypeError(
            f"must be a duration such as 30s, 15m, 1h, 7d or 500ms, got {value!r}")
    number, unit = match.groups()
    return int(number) * _UNIT_MS[unit or "ms"]


def _non_negative(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {value!r}") from None
    if number < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {number}")
    return number


def _run(args: argparse.Namespace, action: Any) -> Any:
    async def main() -> Any:
        async with args.open_host(read_settings(args.config)) as host:
            return await action(host.service)

    return asyncio.run(main())


def _pause(args: argparse.Namespace) -> int:
    _run(args, lambda qs: qs.pause(args.queue))
    print(f"queue {args.queue} paused: workers start no new jobs until `queuekit resume`")
    return 0


def _resume(args: argparse.Namespace) -> int:
    _run(args, lambda qs: qs.resume(args.queue))
    print(f"queue {args.queue} resumed")
    return 0


def _clean(args: argparse.Namespace) -> int:
    removed = _run(args, lambda qs: qs.clean(args.queue, args.state, args.older_than,
                                             args.limit))
    print(f"{len(removed)} {args.state} job(s) removed from {args.queue}")
    return 0


def _remove(args: argparse.Namespace) -> int:
    if _run(args, lambda qs: qs.remove_job(args.queue, args.job_id)):
        print(f"job {args.job_id} removed from {args.queue}")
        return 0
    print(f"no job {args.job_id} on {args.queue}")
    return NOT_FOUND


def add_commands(sub: Any) -> None:
    """Add the queue-control commands to ``sub`` (the parser's sub-parsers)."""
    config = config_option()

    pause = sub.add_parser("pause", parents=[config],
                           help="pause a queue: every worker (Node too) stops starting jobs")
    pause.add_argument("queue")
    pause.set_defaults(func=_pause)

    resume = sub.add_parser("resume", parents=[config], help="resume a paused queue")
    resume.add_argument("queue")
    resume.set_defaults(func=_resume)

    clean = sub.add_parser("clean", parents=[config],
                           help="remove the jobs of a queue in one state, older than an age")
    clean.add_argument("queue")
    clean.add_argument("--state", default=str(JobState.COMPLETED),
                       choices=[str(state) for state in CLEANABLE_STATES],
                       help="which jobs (default completed)")
    clean.add_argument("--older-than", type=parse_duration, default=0, metavar="AGE",
                       help="only jobs finished (or created) longer ago: 30s, 15m, 1h, 7d "
                            "(default 0: all)")
    clean.add_argument("--limit", type=_non_negative, default=1000, metavar="N",
                       help="at most N jobs (default 1000; 0: no limit)")
    clean.set_defaults(func=_clean)

    remove = sub.add_parser("remove", parents=[config],
                            help="remove one job (refused while a worker runs it)")
    remove.add_argument("queue")
    remove.add_argument("job_id")
    remove.set_defaults(func=_remove)
