"""What every side of the benchmark agrees on: payload, job options, loop, memory probe.

The Node scripts in ``benchmarks/node`` receive the same payload shape, job name and job
options as JSON from :mod:`benchmarks.node_side`, so the three implementations put
byte-for-byte comparable jobs into Redis.
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import os
import statistics
from collections.abc import Callable, Coroutine, Mapping
from pathlib import Path
from typing import Any, Final, Literal, TypeVar

T = TypeVar("T")

BENCH_DIR: Final = Path(__file__).resolve().parent
REPO_ROOT: Final = BENCH_DIR.parent
NODE_DIR: Final = BENCH_DIR / "node"

JOB_NAME: Final = "sync-transactions"
"""Job name used by every implementation (the bank-sync job of the NestJS original)."""

BULLMQ_PREFIX: Final = "bull"

JobOptionsMode = Literal["queuekit", "none"]

QUEUEKIT_DEFAULT_JOB_OPTIONS: Final[Mapping[str, Any]] = {
    "attempts": 3,
    "backoff": {"type": "exponential", "delay": 1000},
    "removeOnComplete": {"count": 100, "age": 24 * 3600},
    "removeOnFail": {"count": 500},
}
"""BullMQ job options equal to queuekit's defaults (DEFAULT_JOB_OPTIONS of the NestJS
original), given to raw bullmq and Node so that all three do the same work in Redis."""

LoopName = Literal["uvloop", "asyncio"]


def job_options(mode: JobOptionsMode) -> dict[str, Any]:
    """The BullMQ options the raw sides pass with every job for ``mode``."""
    return dict(QUEUEKIT_DEFAULT_JOB_OPTIONS) if mode == "queuekit" else {}


def payload(index: int) -> dict[str, str]:
    """The job data of job ``index``: a BankSyncJobData in BullMQ's camelCase JSON."""
    return {"userId": f"user-{index}", "accountId": f"acct-{index}", "syncType": "incremental"}


def events_key(queue: str, prefix: str = BULLMQ_PREFIX) -> str:
    """The Redis stream where BullMQ publishes a queue's job events."""
    return f"{prefix}:{queue}:events"


def available_loop(requested: LoopName) -> LoopName:
    """``requested``, or ``asyncio`` when uvloop is requested but not installed."""
    if requested == "uvloop":
        try:
            importlib.import_module("uvloop")
        except ImportError:
            logging.getLogger(__name__).warning("uvloop is not installed; using asyncio's loop")
            return "asyncio"
    return requested


def run_async(main: Callable[[], Coroutine[Any, Any, T]], loop: LoopName) -> T:
    """Run ``main()`` to completion on a fresh event loop of the given kind."""
    factory: Callable[[], asyncio.AbstractEventLoop] | None = None
    if available_loop(loop) == "uvloop":
        uvloop: Any = importlib.import_module("uvloop")
        factory = uvloop.new_event_loop
    with asyncio.Runner(loop_factory=factory) as runner:
        return runner.run(main())


_PAGE_SIZE: Final = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int:
    """Resident set size of this process, in bytes (Linux ``/proc/self/statm``)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * _PAGE_SIZE
    except OSError:
        import resource  # not Linux: peak RSS is the best available approximation

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def percentile(values: list[float], pct: float) -> float:
    """The ``pct``-th percentile (0 < pct < 100) of ``values``, interpolated."""
    if len(values) == 1:
        return values[0]
    cuts = statistics.quantiles(values, n=1000, method="inclusive")
    return cuts[round(pct * 10) - 1]
