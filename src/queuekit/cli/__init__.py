"""The ``queuekit`` command line.

The commands receive a :class:`~queuekit.runtime.host.HostFactory` (the console script
in ``containers/`` passes the container's), so nothing here imports the composition root.
A new command goes in :mod:`queuekit.cli.ops` (operations on queues) or next to
``demo`` here, and talks to the queues through ``host.service``.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from queuekit.cli import controls, dashboard, schedules
from queuekit.cli.ops import add_commands
from queuekit.demo.run import format_table, run_demo
from queuekit.errors import QueuekitError
from queuekit.runtime.host import HostFactory
from queuekit.settings import load_settings


def _demo(args: argparse.Namespace) -> int:
    overrides: dict[str, object] = {"backend": "memory"}
    if args.redis_url:
        overrides = {"backend": "redis", "redis": {"url": args.redis_url}}
    settings = load_settings(**overrides)
    where = f"Redis at {settings.redis.safe_url}" if args.redis_url else "the in-memory backend"
    print(f"queuekit demo on {where}")
    then = dashboard.demo_hook(args) if args.dashboard else None
    rows = asyncio.run(run_demo(settings, args.open_host, then=then))
    print()
    print(format_table(rows))
    failed = [r for r in rows if r.state != "completed"]
    print(f"\n{len(rows) - len(failed)} of {len(rows)} jobs completed")
    return 1 if failed else 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every sub-command."""
    parser = argparse.ArgumentParser(prog="queuekit", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the example application end to end")
    demo.add_argument("--redis-url", help="run on this Redis instead of in memory")
    demo.add_argument("--dashboard", action="store_true",
                      help="then serve the dashboard on the demo's queues until Ctrl-C")
    dashboard.add_dashboard_options(demo)
    demo.set_defaults(func=_demo)
    add_commands(sub)
    schedules.add_commands(sub)
    controls.add_commands(sub)
    dashboard.add_commands(sub)
    return parser


def main(argv: Sequence[str] | None, open_host: HostFactory) -> int:
    """Run the command line ``argv`` (None: ``sys.argv``) on hosts from ``open_host``."""
    args = build_parser().parse_args(argv)
    args.open_host = open_host
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else getattr(args, "log_level", logging.WARNING),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        code: int = args.func(args)
    except QueuekitError as exc:
        print(f"queuekit: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # pragma: no cover - interactive
        return 130
    return code
