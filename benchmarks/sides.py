"""The adapter interface between a Python job library and the shared measurement code.

A *side* is one Python implementation under test (raw ``bullmq`` or ``queuekit``). It
provides only primitives: open a producer on a queue (add one job, add a chunk of jobs)
and open a worker on a queue (start it with a processor hook, read the job counts). Every
scenario -- sequential adds, adds in flight, bulk adds, worker throughput, latency, memory
-- is built once on top of these primitives in :mod:`benchmarks.measure`, so the sides
share all measurement code.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol


@dataclass(frozen=True)
class JobCounts:
    """The job counts of one queue that the benchmark needs."""

    waiting: int
    active: int
    delayed: int
    failed: int

    @property
    def pending(self) -> int:
        """Jobs not finished yet."""
        return self.waiting + self.active + self.delayed


class Producer(Protocol):
    """Adds benchmark jobs to one queue."""

    @property
    def events_key(self) -> str:
        """The Redis stream where BullMQ publishes this queue's job events."""
        ...

    async def add_one(self, index: int) -> str:
        """Add job ``index`` (data: :func:`benchmarks.common.payload`); return its id."""
        ...

    async def add_bulk(self, first: int, count: int) -> None:
        """Add jobs ``first .. first + count - 1`` in one bulk call."""
        ...

    async def wait_finished(self, job_id: str) -> None:
        """Return once job ``job_id`` is done, the way an application of this library
        waits for a job (queuekit: ``wait_for_job``; raw bullmq has no such call, so it
        reads the events stream itself). Raise if the job failed."""
        ...

    async def aclose(self) -> None:
        """Close every connection the producer opened."""
        ...


class WorkerSession(Protocol):
    """One worker on one queue, inside the worker subprocess."""

    async def start(self, concurrency: int, on_processed: Callable[[], None]) -> None:
        """Start processing; the processor is a no-op that calls ``on_processed()``.

        Must be called inside the running event loop (BullMQ's Worker needs it).
        """
        ...

    async def job_counts(self) -> JobCounts:
        """The queue's counts, through the implementation's own API."""
        ...

    async def set_paused(self, paused: bool) -> None:
        """Pause or resume the queue (BullMQ's ``pause`` / ``resume``) through the
        implementation's own API."""
        ...

    async def aclose(self) -> None:
        """Close the worker (waiting for running jobs) and its connections."""
        ...


class PythonSide(Protocol):
    """A Python implementation under test."""

    key: str
    """Short name used on the command line and in queue names (``bullmq``)."""
    label: str
    """Name in the report (``raw bullmq (Python)``)."""

    def unavailable_reason(self) -> str | None:
        """``None`` when the implementation can run here, else why not."""
        ...

    def versions(self) -> dict[str, str]:
        """Package versions worth reporting."""
        ...

    async def open_producer(
        self, redis_url: str, queue: str, bullmq_options: Mapping[str, Any]
    ) -> Producer:
        """A producer for ``queue``. ``bullmq_options`` are the BullMQ job options a raw
        client passes with each job; a library with its own defaults may ignore them."""
        ...

    async def open_worker(self, redis_url: str, queue: str) -> WorkerSession:
        """A worker session for ``queue`` (not started yet; connecting may be lazy)."""
        ...


_SIDE_MODULES = {"bullmq": "benchmarks.bullmq_side", "queuekit": "benchmarks.queuekit_side"}


def load_side(key: str) -> PythonSide:
    """The side registered as ``key`` (each module exposes ``SIDE``)."""
    module = importlib.import_module(_SIDE_MODULES[key])
    side: PythonSide = module.SIDE
    return side


def python_side_keys() -> list[str]:
    """Keys of all Python sides, in report order."""
    return list(_SIDE_MODULES)
