"""Worker subprocess of a Python side: ``python -m benchmarks.worker_proc --side bullmq ...``.

Each worker measurement runs in its own process so that workers never share CPU state,
memory or an event loop with the producer. The process speaks JSON lines on stdout:
``{"event": "ready"}`` once the worker is started, then one ``{"event": "result", ...}``
(see :class:`benchmarks.measure.WorkerReport`). Logging goes to stderr. With
``--expect 0`` it runs until its stdin is closed (the latency scenario). With
``--session`` it processes slices of jobs it is told to add, one command per stdin line
(:func:`benchmarks.measure.serve_worker_slices`, for :mod:`benchmarks.interleave`).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from typing import Any, get_args

from benchmarks.common import LoopName, run_async
from benchmarks.measure import WorkerReport, run_worker, serve_worker_slices
from benchmarks.sides import load_side, python_side_keys

log = logging.getLogger("benchmarks.worker_proc")


def _emit(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


async def _stdin_closed() -> None:
    await asyncio.to_thread(sys.stdin.buffer.read)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--side", choices=python_side_keys(), required=True)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--concurrency", type=int, default=1)
    parser.add_argument(
        "--expect", type=int, default=0, help="jobs to process; 0: until stdin closes"
    )
    parser.add_argument("--rss-at", default="", help="comma-separated job counts to sample RSS at")
    parser.add_argument("--loop", choices=get_args(LoopName), default="uvloop")
    parser.add_argument("--delayed-remain", action="store_true",
                        help="done once nothing waits or runs (job schedulers leave their "
                             "next runs delayed)")
    parser.add_argument("--session", action="store_true",
                        help="process the slices of jobs commanded on stdin")
    parser.add_argument("--job-options", default="{}",
                        help="BullMQ job options of the jobs a session adds (JSON)")
    return parser.parse_args(argv)


async def _main(args: argparse.Namespace) -> WorkerReport:
    side = load_side(args.side)
    session = await side.open_worker(args.redis_url, args.queue)
    if args.session:
        producer = await side.open_producer(args.redis_url, args.queue,
                                            json.loads(args.job_options))
        try:
            # stdin is read between slices only, never while one is timed.
            return await serve_worker_slices(
                session, producer, concurrency=args.concurrency, emit=_emit,
                lines=lambda: asyncio.to_thread(sys.stdin.readline))
        finally:
            await producer.aclose()
    checkpoints = frozenset(int(n) for n in args.rss_at.split(",") if n)
    return await run_worker(
        session,
        concurrency=args.concurrency,
        expect=args.expect,
        rss_checkpoints=checkpoints,
        on_ready=lambda: _emit({"event": "ready"}),
        until_stopped=_stdin_closed,
        delayed_remain=args.delayed_remain,
    )


def main(argv: list[str] | None = None) -> int:
    """Entry point of the worker subprocess."""
    logging.basicConfig(
        level=logging.WARNING,
        stream=sys.stderr,
        format="worker %(levelname)s %(name)s: %(message)s",
    )
    args = _parse_args(argv)
    report = run_async(lambda: _main(args), args.loop)
    _emit(report.to_json())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
