"""``queuekit dashboard``: the web dashboard on this host's queues.

Binds 127.0.0.1:8080 by default; any other address refuses to start without a token
(``--token`` or ``QUEUEKIT_DASHBOARD_TOKEN``, which keeps it out of the process list).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
from typing import Any

from queuekit.cli.ops import config_option, read_settings
from queuekit.dashboard import check_bind, serve
from queuekit.runtime.host import HostFactory

TOKEN_ENV_VAR = "QUEUEKIT_DASHBOARD_TOKEN"


def _announce(url: str) -> None:
    print(f"queuekit dashboard on {url} (Ctrl-C stops)", flush=True)


async def _run(args: argparse.Namespace) -> None:
    open_host: HostFactory = args.open_host
    async with open_host(read_settings(args.config)) as host:
        await serve(host.service, host=args.host, port=args.port, token=args.token,
                    read_only=args.read_only, refresh=args.refresh, on_ready=_announce)


def _dashboard(args: argparse.Namespace) -> int:
    args.token = args.token or os.environ.get(TOKEN_ENV_VAR) or None
    check_bind(args.host, args.token)  # before anything connects
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_run(args))
    return 0


def add_dashboard_options(parser: argparse.ArgumentParser) -> None:
    """--host, --port, --token, --read-only, --refresh (shared with ``demo --dashboard``)."""
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1; any other needs "
                             "--token)")
    parser.add_argument("--port", type=int, default=8080, help="port (default 8080)")
    parser.add_argument("--token", help=f"require this token (or ${TOKEN_ENV_VAR}): "
                                        "bearer header, basic-auth password or ?token=")
    parser.add_argument("--read-only", action="store_true",
                        help="no actions: every POST is refused")
    parser.add_argument("--refresh", type=float, default=5.0, metavar="SECONDS",
                        help="auto-refresh interval of the pages (default 5; 0: off)")


def add_commands(sub: Any) -> None:
    """Add ``dashboard`` to the sub-parsers."""
    parser = sub.add_parser("dashboard", parents=[config_option()],
                            help="serve the web dashboard of the queues")
    add_dashboard_options(parser)
    parser.set_defaults(func=_dashboard)


def demo_hook(args: argparse.Namespace) -> Any:
    """What ``demo --dashboard`` runs once its jobs finished: the dashboard on the demo's
    service (in memory too), until Ctrl-C."""
    token = args.token or os.environ.get(TOKEN_ENV_VAR) or None
    check_bind(args.host, token)

    async def then(host: Any) -> None:
        print("\nthe demo's queues stay up for the dashboard", flush=True)
        with contextlib.suppress(asyncio.CancelledError):
            await serve(host.service, host=args.host, port=args.port, token=token,
                        read_only=args.read_only, refresh=args.refresh, on_ready=_announce)

    return then
