"""Producer subprocess of a Python side: ``python -m benchmarks.producer_proc --side queuekit ...``.

Each side's producer runs in a process of its own, as Node's ``producer.mjs session``
does, so that no side's adds share a process (its CPU history, its heap, its event loop)
with another side's. The same JSON-line protocol as the Node session: one warm-up add,
``{"event": "ready"}``, then one command per stdin line (``{"op": "add-one" | "in-flight"
| "bulk", "first", "count", "window"?, "chunk"?}``), each answered with ``{"event":
"slice", "seconds": ...}``; ``{"event": "result"}`` once stdin is closed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final, get_args

from benchmarks import measure
from benchmarks.common import LoopName, run_async
from benchmarks.sides import Producer, load_side, python_side_keys

_Op = Callable[[Producer, Mapping[str, Any]], Awaitable[float]]

OPS: Final[Mapping[str, _Op]] = {
    "add-one": lambda producer, c: measure.time_add_one(producer, c["first"], c["count"]),
    "in-flight": lambda producer, c: measure.time_add_in_flight(
        producer, c["first"], c["count"], c["window"]
    ),
    "bulk": lambda producer, c: measure.time_add_bulk(producer, c["first"], c["count"], c["chunk"]),
}


def _emit(message: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--side", choices=python_side_keys(), required=True)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--queue", required=True)
    parser.add_argument("--warm-up-index", type=int, required=True)
    parser.add_argument("--job-options", default="{}", help="BullMQ job options (JSON)")
    parser.add_argument("--loop", choices=get_args(LoopName), default="uvloop")
    return parser.parse_args(argv)


async def serve(producer: Producer, lines: Callable[[], Awaitable[str]]) -> int:
    """Answer commands read with ``lines()`` until it returns ``""``; the slices served."""
    served = 0
    while line := await lines():
        if not line.strip():
            continue
        command = json.loads(line)
        op = OPS.get(command.get("op"))
        if op is None:
            raise ValueError(f"unknown op {command.get('op')!r}")
        _emit({"event": "slice", "seconds": await op(producer, command)})
        served += 1
    return served


async def _main(args: argparse.Namespace) -> None:
    side = load_side(args.side)
    producer = await side.open_producer(args.redis_url, args.queue, json.loads(args.job_options))
    try:
        await measure.warm_up(producer, args.warm_up_index)
        _emit({"event": "ready"})
        # stdin is read between slices only, never while one is timed.
        await serve(producer, lambda: asyncio.to_thread(sys.stdin.readline))
    finally:
        await producer.aclose()


def main(argv: list[str] | None = None) -> int:
    """Entry point of the producer subprocess."""
    logging.basicConfig(
        level=logging.WARNING,
        stream=sys.stderr,
        format="producer %(levelname)s %(name)s: %(message)s",
    )
    args = _parse_args(argv)
    try:
        run_async(lambda: _main(args), args.loop)
    except Exception as err:  # reported on stdout, where the suite reads
        _emit({"event": "error", "message": f"{type(err).__name__}: {err}"})
        return 1
    _emit({"event": "result"})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
