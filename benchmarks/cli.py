"""Command line of the benchmark: ``.venv/bin/python benchmarks/run.py [--jobs N] [--runs R]``."""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import signal
import sys
from pathlib import Path
from types import FrameType
from typing import get_args

from benchmarks.common import REPO_ROOT, JobOptionsMode, LoopName, available_loop, run_async
from benchmarks.implementations import Implementation, PythonImplementation, Settings
from benchmarks.node_side import NodeImplementation, NodeUnavailableError, ensure_node_modules
from benchmarks.redis_server import RedisServer, RedisServerError
from benchmarks.report import Environment, now, render
from benchmarks.results import SCENARIOS, ImplResult, SuiteOptions
from benchmarks.sides import load_side
from benchmarks.suite import Suite

log = logging.getLogger("benchmarks")

IMPLEMENTATION_KEYS = ("bullmq", "node", "queuekit")
_JOB_OPTION_TEXT = {
    "queuekit": "raw bullmq and Node pass queuekit's defaults with every job (attempts 3, "
    "exponential backoff 1 s, removeOnComplete count 100 / age 24 h, removeOnFail count 500), "
    "so all three do the same work in Redis; queuekit applies them itself",
    "none": "raw bullmq and Node pass no job options (BullMQ defaults: completed jobs are "
    "kept); queuekit applies its configured defaults",
}


def _positive(text: str) -> int:
    value = int(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("must be a positive integer")
    return value


def _checkpoints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(sorted({int(part) for part in text.split(",") if part.strip()}))
    except ValueError as err:
        raise argparse.ArgumentTypeError("a comma-separated list of job counts") from err
    if any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError("job counts must be positive")
    return values


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        prog="benchmarks/run.py",
        description="Throughput, latency, Redis commands and memory of queuekit, "
        "raw bullmq (Python) and Node BullMQ, on a redis-server of its own.",
    )
    parser.add_argument("--jobs", type=_positive, default=10_000, help="jobs per scenario (10000)")
    parser.add_argument("--runs", type=_positive, default=5, help="runs; medians are reported (5)")
    parser.add_argument(
        "--out",
        type=Path,
        default=REPO_ROOT / "docs" / "benchmarks.md",
        help="markdown report to write (docs/benchmarks.md)",
    )
    parser.add_argument(
        "--only",
        default=",".join(IMPLEMENTATION_KEYS),
        help="comma-separated implementations: bullmq,node,queuekit",
    )
    parser.add_argument(
        "--latency-samples",
        type=_positive,
        help="jobs for the add-to-done latency (min(1000, --jobs))",
    )
    parser.add_argument(
        "--rss-jobs",
        type=_checkpoints,
        help="job counts to sample worker RSS at (--jobs and 5 x --jobs; '' skips)",
    )
    parser.add_argument(
        "--job-options",
        choices=get_args(JobOptionsMode),
        default="queuekit",
        help="job options of the raw sides (queuekit: queuekit's defaults)",
    )
    parser.add_argument(
        "--loop",
        choices=get_args(LoopName),
        default="uvloop",
        help="Python event loop (uvloop when installed)",
    )
    parser.add_argument(
        "--scenarios",
        default=",".join(SCENARIOS),
        help=f"comma-separated scenarios to run ({','.join(SCENARIOS)})",
    )
    args = parser.parse_args(argv)
    for option, allowed in (("only", IMPLEMENTATION_KEYS), ("scenarios", SCENARIOS)):
        unknown = set(getattr(args, option).split(",")) - set(allowed)
        if unknown:
            parser.error(f"unknown value(s) in --{option}: {', '.join(sorted(unknown))}")
    return args


def _implementations(
    settings: Settings, only: set[str]
) -> tuple[list[Implementation], list[ImplResult]]:
    usable: list[Implementation] = []
    unavailable: list[ImplResult] = []
    for key in IMPLEMENTATION_KEYS:
        if key not in only:
            continue
        if key == "node":
            try:
                ensure_node_modules()
                usable.append(NodeImplementation(settings))
            except NodeUnavailableError as err:
                label = NodeImplementation.label
                unavailable.append(ImplResult("node", label, unavailable=str(err)))
            continue
        side = load_side(key)
        reason = side.unavailable_reason()
        if reason is None:
            usable.append(PythonImplementation(side, settings))
        else:
            unavailable.append(ImplResult(key, side.label, unavailable=reason))
    for result in unavailable:
        log.warning("%s: %s", result.key, result.unavailable)
    return usable, unavailable


def _command_line(argv: list[str] | None) -> str:
    python = sys.executable
    if Path(python).is_relative_to(Path.cwd()):
        python = os.path.relpath(python)
    script = sys.argv[0]
    head = ["-m", "benchmarks"] if script.endswith("__main__.py") else [os.path.relpath(script)]
    return shlex.join([python, *head, *(sys.argv[1:] if argv is None else argv)])


def _interrupt_on_sigterm() -> None:
    # SIGTERM would end the process without unwinding, leaving the redis-server and the
    # worker processes behind; as KeyboardInterrupt it runs the same clean-up as Ctrl-C.
    def handler(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    signal.signal(signal.SIGTERM, handler)


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, write the report, print it.

    Exit status: 0, or 1 if a measurement failed, 2 if Redis could not be started,
    130 when interrupted.
    """
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    log.setLevel(logging.INFO)
    if (REPO_ROOT / "src").is_dir() and str(REPO_ROOT / "src") not in sys.path:
        sys.path.append(str(REPO_ROOT / "src"))  # queuekit from the source tree if not installed
    args = parse_args(argv)
    _interrupt_on_sigterm()
    loop = available_loop(args.loop)
    options = SuiteOptions(
        jobs=args.jobs,
        runs=args.runs,
        latency_samples=args.latency_samples or min(1000, args.jobs),
        rss_checkpoints=args.rss_jobs if args.rss_jobs is not None else (args.jobs, 5 * args.jobs),
        scenarios=frozenset(args.scenarios.split(",")),
    )
    load_before = os.getloadavg()
    try:
        with RedisServer() as server:
            settings = Settings(redis_url=server.url, loop=loop, job_options=args.job_options)
            usable, unavailable = _implementations(settings, set(args.only.split(",")))
            suite = Suite(server.url, options, usable, unavailable)
            result = run_async(suite.run, loop)
    except RedisServerError as err:
        log.error("%s", err)
        return 2
    except KeyboardInterrupt:
        log.warning("interrupted; the redis-server and the worker processes were stopped")
        return 130
    node = next((r.versions.get("node") for r in result.results if r.key == "node"), None)
    env = Environment(
        command=_command_line(argv),
        date=now(),
        loop=loop,
        job_options=_JOB_OPTION_TEXT[args.job_options],
        node=node or "not used",
        load=(load_before, os.getloadavg()),
    )
    text = render(result, env)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    print(text)  # the report is the CLI's output
    log.info("report written to %s", args.out)
    return 1 if any(r.errors for r in result.results) else 0
