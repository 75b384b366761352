"""Producer subprocess of a Python side: ``python -m benchmarks.producer_proc --side queuekit ...``.

Each side's producer runs in a process of its own, as Node's ``producer.mjs session``
does, so that no side's adds share a process (its CPU history, its heap, its event loop)
with another side's. The same JSON-line protocol as the Node session: one warm-up add,
``{"event": "ready"}``, then one command per stdin line (``{"op": "add-one" | "in-flight"
| "bulk", "first", "count", "window"?, "chunk"?}``), each answered with ``{"event":
"slice", "seconds": ...}``; ``{"event": "result"}`` once stdin is closed. ``{"op":
"latency", "first", "count", "wait": "app" | "stream"}`` adds ``count`` jobs one at a
time, each waited for (a worker runs elsewhere), and answers with ``"latencies_ms"`` too.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final, get_args

from benchmarks import measure
from benchmarks.common import LoopName, run_async
from benchmarks.measure import CompletionWatcher
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


class _Waits:
    """The two ways a latency sample waits: the side's own (``app``) and the shared
    reader of the events stream (``stream``, opened on first use at the stream's end)."""

    def __init__(self, producer: Producer, redis_url: str) -> None:
        self._producer = producer
        self._redis_url = redis_url
        self._watcher: CompletionWatcher | None = None

    async def get(self, kind: str) -> Callable[[str], Awaitable[None]]:
        if kind == "app":
            return self._producer.wait_finished
        if kind != "stream":
            raise ValueError(f"unknown wait {kind!r}")
        if self._watcher is None:
            self._watcher = CompletionWatcher(self._redis_url, self._producer.events_key)
            await self._watcher.seek_end()
        return self._watcher.wait_completed

    async def aclose(self) -> None:
        if self._watcher is not None:
            await self._watcher.aclose()


async def serve(producer: Producer, lines: Callable[[], Awaitable[str]],
                redis_url: str = "") -> int:
    """Answer commands read with ``lines()`` until it returns ``""``; the slices served."""
    served = 0
    waits = _Waits(producer, redis_url)
    try:
        while line := await lines():
            if not line.strip():
                continue
            command = json.loads(line)
            if command.get("op") == "latency":
                wait = await waits.get(command.get("wait", "app"))
                started = time.perf_counter()
                found = await measure.sample_latencies(producer, wait, command["count"], 0)
                _emit({"event": "slice", "seconds": time.perf_counter() - started,
                       "latencies_ms": found})
            else:
                op = OPS.get(command.get("op"))
                if op is None:
                    raise ValueError(f"unknown op {command.get('op')!r}")
                _emit({"event": "slice", "seconds": await op(producer, command)})
            served += 1
    finally:
        await waits.aclose()
    return served


async def _main(args: argparse.Namespace) -> None:
    side = load_side(args.side)
    producer = await side.open_producer(args.redis_url, args.queue, json.loads(args.job_options))
    try:
        await measure.warm_up(producer, args.warm_up_index)
        _emit({"event": "ready"})
        # stdin is read between slices only, never while one is timed.
        await serve(producer, lambda: asyncio.to_thread(sys.stdin.readline), args.redis_url)
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
