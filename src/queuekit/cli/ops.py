"""The operations commands: ``worker``, ``stats``, ``jobs``, ``retry`` and ``health``.

Each reads the configuration (``--config`` names the YAML file; ``QUEUEKIT_*`` still
override it), loads the plugins and talks to the queues through ``QueueService``.
Exit codes: 0 success, 1 unhealthy (``health``), 2 bad configuration or unreachable Redis.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from queuekit.errors import ConfigurationError, QueueUnavailableError
from queuekit.jobs import JobState
from queuekit.records import LISTABLE_STATES
from queuekit.runtime.host import HostFactory
from queuekit.runtime.monitor import (
    check_health,
    collect_stats,
    expected_workers,
    format_health,
    format_jobs,
    format_stats,
    job_summary,
)
from queuekit.runtime.runner import WorkerOptions, run_workers
from queuekit.runtime.supervisor import SupervisorOptions, cpu_count, run_supervisor
from queuekit.settings import CONFIG_ENV_VAR, QueuekitSettings, load_settings

#: Exit code of ``health`` when something is wrong.
UNHEALTHY = 1
#: ANSI: clear the screen and go home (``stats --watch`` on a terminal).
_CLEAR = "\x1b[2J\x1b[H"


@contextlib.contextmanager
def _config_file(path: str | None) -> Iterator[None]:
    """``QUEUEKIT_CONFIG`` set to ``path`` while the settings are read."""
    if path is None:
        yield
        return
    if not Path(path).is_file():
        raise ConfigurationError(f"--config {path}: no such file")
    previous = os.environ.get(CONFIG_ENV_VAR)
    os.environ[CONFIG_ENV_VAR] = path
    try:
        yield
    finally:
        if previous is None:
            del os.environ[CONFIG_ENV_VAR]
        else:
            os.environ[CONFIG_ENV_VAR] = previous


def read_settings(config: str | None, **overrides: Any) -> QueuekitSettings:
    """The settings from ``config`` (or the usual places), with command-line overrides."""
    with _config_file(config):
        try:
            return load_settings(**overrides)
        except yaml.YAMLError as exc:
            where = config or os.environ.get(CONFIG_ENV_VAR) or "config.yaml"
            raise ConfigurationError(f"cannot read {where}: {exc}") from None


def config_option() -> argparse.ArgumentParser:
    """The ``--config PATH`` option every command that reads the settings takes (a parent
    parser: ``sub.add_parser(name, parents=[config_option()])``)."""
    config = argparse.ArgumentParser(add_help=False)
    config.add_argument("--config", metavar="PATH",
                        help="YAML configuration file (default: $QUEUEKIT_CONFIG or "
                             "./config.yaml); QUEUEKIT_* variables still override it")
    return config


def _queue_list(value: str) -> list[str]:
    queues = [q.strip() for q in value.split(",") if q.strip()]
    if not queues:
        raise argparse.ArgumentTypeError("name at least one queue")
    return queues


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {number}")
    return number


def _port(value: str) -> int:
    number = int(value)
    if not 0 <= number <= 65535:
        raise argparse.ArgumentTypeError(f"must be a TCP port (0..65535), got {number}")
    return number


# -- worker ---------------------------------------------------------------------------

def _worker(args: argparse.Namespace) -> int:
    overrides: dict[str, Any] = {}
    if args.queues:
        overrides["worker"] = {"queues": args.queues}
    settings = read_settings(args.config, **overrides)
    options = WorkerOptions(concurrency=args.concurrency, metrics_port=args.metrics_port,
                            metrics_host=args.metrics_host,
                            metrics_interval=args.metrics_interval)
    if args.processes > 1:
        return run_supervisor(settings, args.open_host, options, SupervisorOptions(
            processes=args.processes, max_restarts=args.max_restarts))
    asyncio.run(run_workers(settings, args.open_host, options))
    return 0


def _processes(value: str) -> int:
    return cpu_count() if value == "auto" else _positive(value)


# -- stats ----------------------------------------------------------------------------

async def _stats_loop(args: argparse.Namespace, settings: QueuekitSettings) -> None:
    async with args.open_host(settings) as host:
        shown = 0
        while True:
            stats = await collect_stats(host.service, args.queue or None)
            if args.json:
                print(json.dumps(stats, sort_keys=True), flush=True)
            else:
                if args.watch and sys.stdout.isatty():
                    print(_CLEAR, end="")
                if args.watch:
                    stamp = dt.datetime.now().astimezone().strftime("%Y-%m-%d %H:%M:%S")
                    print(f"{stamp}  (every {args.interval:g} s; Ctrl-C stops)")
                print(format_stats(stats), flush=True)
            shown += 1
            if not args.watch or (args.count is not None and shown >= args.count):
                return
            await asyncio.sleep(args.interval)


def _stats(args: argparse.Namespace) -> int:
    settings = read_settings(args.config)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_stats_loop(args, settings))
    return 0


# -- jobs and retry -------------------------------------------------------------------

async def _jobs_async(args: argparse.Namespace, settings: QueuekitSettings) -> None:
    async with args.open_host(settings) as host:
        jobs = await host.service.get_jobs(args.queue, args.state, args.limit)
    if args.json:
        print(json.dumps([job_summary(job) for job in jobs], indent=2))
    elif not jobs:
        print(f"no {args.state} jobs on {args.queue}")
    else:
        print(format_jobs(jobs))


def _jobs(args: argparse.Namespace) -> int:
    asyncio.run(_jobs_async(args, read_settings(args.config)))
    return 0


async def _retry_async(args: argparse.Namespace, settings: QueuekitSettings) -> int:
    open_host: HostFactory = args.open_host
    async with open_host(settings) as host:
        return await host.service.retry_jobs(args.queue)


def _retry(args: argparse.Namespace) -> int:
    moved = asyncio.run(_retry_async(args, read_settings(args.config)))
    print(f"{moved} failed job(s) of {args.queue} moved back to waiting")
    return 0


# -- health ---------------------------------------------------------------------------

async def _health_async(args: argparse.Namespace, settings: QueuekitSettings) -> int:
    try:
        async with args.open_host(settings) as host:
            queues = args.queues if args.queues is not None else expected_workers(
                settings, host.plugins)
            report = await check_health(host.service, queues)
    except QueueUnavailableError as exc:
        message = f"unhealthy: {exc}"
        print(json.dumps({"ok": False, "reasons": [str(exc)]}) if args.json else message)
        return UNHEALTHY
    if args.json:
        print(json.dumps({"ok": report.ok, "backend": report.backend, "redis": report.redis,
                          "breaker": report.breaker, "workers": report.workers,
                          "reasons": list(report.reasons)}, sort_keys=True))
    else:
        print(format_health(report))
    return 0 if report.ok else UNHEALTHY


def _health(args: argparse.Namespace) -> int:
    return asyncio.run(_health_async(args, read_settings(args.config)))


# -- the parsers ----------------------------------------------------------------------

def add_commands(sub: Any) -> None:
    """Add the operations commands to ``sub`` (the parser's sub-parsers)."""
    config = config_option()

    worker = sub.add_parser("worker", parents=[config],
                            help="run the plugins' processors until SIGTERM/SIGINT")
    worker.add_argument("--queues", type=_queue_list, metavar="Q1,Q2",
                        help="only these queues (overrides worker.queues)")
    worker.add_argument("--concurrency", type=_positive, metavar="N",
                        help="jobs at once per queue (overrides the configuration)")
    worker.add_argument("--metrics-port", type=_port, metavar="PORT",
                        help="serve Prometheus metrics on http://HOST:PORT/metrics")
    worker.add_argument("--metrics-host", default="0.0.0.0", metavar="HOST",
                        help="address the metrics server binds (default 0.0.0.0)")
    worker.add_argument("--metrics-interval", type=float, default=5.0, metavar="SECONDS",
                        help="how often queue depths are refreshed (default 5)")
    worker.add_argument("--processes", type=_processes, default=1, metavar="N|auto",
                        help="worker processes under one supervisor (default 1; auto: one "
                             "per core); a process that dies is restarted")
    worker.add_argument("--max-restarts", type=_positive, default=5, metavar="N",
                        help="with --processes: give up after more than N exits within 60 s "
                             "(default 5)")
    worker.set_defaults(func=_worker, log_level=logging.INFO)

    stats = sub.add_parser("stats", parents=[config], help="job counts per queue and state")
    stats.add_argument("queue", nargs="*", help="queues to show (default: every known queue)")
    stats.add_argument("--json", action="store_true", help="print JSON (one line per refresh)")
    stats.add_argument("--watch", action="store_true", help="refresh until Ctrl-C")
    stats.add_argument("--interval", type=float, default=2.0, metavar="SECONDS",
                       help="seconds between refreshes with --watch (default 2)")
    stats.add_argument("--count", type=_positive, metavar="N",
                       help="with --watch, stop after N refreshes")
    stats.set_defaults(func=_stats)

    jobs = sub.add_parser("jobs", parents=[config], help="list the jobs of a queue in a state")
    jobs.add_argument("queue")
    jobs.add_argument("--state", default=str(JobState.FAILED),
                      choices=[str(state) for state in LISTABLE_STATES],
                      help="which jobs (default failed)")
    jobs.add_argument("--limit", type=_positive, default=20, metavar="N",
                      help="at most N jobs (default 20)")
    jobs.add_argument("--json", action="store_true", help="print JSON")
    jobs.set_defaults(func=_jobs)

    retry = sub.add_parser("retry", parents=[config],
                           help="move the failed jobs of a queue back to waiting")
    retry.add_argument("queue")
    retry.set_defaults(func=_retry)

    health = sub.add_parser("health", parents=[config],
                            help="exit 0 when Redis answers, the breaker is closed and the "
                                 "configured workers run; 1 with the reason otherwise")
    health.add_argument("--queues", type=_queue_list, metavar="Q1,Q2",
                        help="queues that must have a worker (default: those the "
                             "configuration runs)")
    health.add_argument("--json", action="store_true", help="print JSON")
    health.set_defaults(func=_health)
