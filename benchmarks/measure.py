"""Measurement code shared by every Python side (raw bullmq and queuekit).

Producer scenarios run in the calling process; worker scenarios run in the worker
subprocess (:mod:`benchmarks.worker_proc`) through :func:`run_worker`. None of this code
knows which library it measures: it only sees the primitives of :mod:`benchmarks.sides`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Final

from redis.asyncio import Redis

from benchmarks.common import rss_bytes
from benchmarks.sides import JobCounts, Producer, WorkerSession

log = logging.getLogger(__name__)

_IDLE_POLL_S: Final = 0.001
"""Interval of the job-count poll that confirms the last jobs left ``active``."""
_EVENT_BLOCK_MS: Final = 1000
_COMPLETION_TIMEOUT_S: Final = 30.0
_SESSION_CHUNK: Final = 1000
"""Bulk calls of a worker session's untimed adds."""


async def warm_up(producer: Producer, index: int) -> None:
    """One untimed add: the first add pays for connecting and loading the Lua script."""
    await producer.add_one(index)


async def time_add_one(producer: Producer, first: int, count: int) -> float:
    """Seconds to add jobs ``first .. first + count - 1`` one at a time, awaiting each add."""
    started = time.perf_counter()
    for index in range(first, first + count):
        await producer.add_one(index)
    return time.perf_counter() - started


async def time_add_in_flight(producer: Producer, first: int, count: int, window: int) -> float:
    """Seconds to add ``count`` jobs keeping ``window`` adds in flight at all times."""
    indices: Iterator[int] = iter(range(first, first + count))

    async def lane() -> None:
        # Lanes share one iterator: each takes the next index as soon as its add returns.
        for index in indices:
            await producer.add_one(index)

    started = time.perf_counter()
    await asyncio.gather(*(lane() for _ in range(window)))
    return time.perf_counter() - started


async def add_in_chunks(producer: Producer, first: int, count: int, chunk: int) -> None:
    """Add ``count`` jobs from ``first`` on in bulk calls of at most ``chunk`` jobs."""
    end = first + count
    for start in range(first, end, chunk):
        await producer.add_bulk(start, min(chunk, end - start))


async def time_add_bulk(producer: Producer, first: int, count: int, chunk: int) -> float:
    """Seconds to add ``count`` jobs in bulk calls of ``chunk`` jobs."""
    started = time.perf_counter()
    await add_in_chunks(producer, first, count, chunk)
    return time.perf_counter() - started


class CompletionWatcher:
    """Waits for a job's ``completed`` event on the queue's BullMQ event stream.

    Every implementation writes the same stream (it is BullMQ's own format), so the
    latency of all sides is observed the same way, and an event cannot be missed: the
    watcher reads on from the last entry it has seen.
    """

    def __init__(self, redis_url: str, stream: str) -> None:
        self._client = Redis.from_url(
            redis_url, decode_responses=True, socket_connect_timeout=5.0, socket_timeout=None
        )
        self._stream = stream
        self._last_id = "0-0"

    async def seek_end(self) -> None:
        """Read on from the stream's last entry (skip the events of earlier jobs)."""
        last: Any = await self._client.xrevrange(self._stream, count=1)
        self._last_id = str(last[0][0]) if last else "0-0"

    async def wait_completed(self, job_id: str) -> None:
        """Return once job ``job_id`` has completed; raise if it failed or timed out."""
        deadline = time.monotonic() + _COMPLETION_TIMEOUT_S
        while time.monotonic() < deadline:
            reply: Any = await self._client.xread(
                {self._stream: self._last_id}, count=100, block=_EVENT_BLOCK_MS
            )
            for _stream, entries in reply or []:
                for entry_id, fields in entries:
                    self._last_id = entry_id
                    if fields.get("jobId") != job_id:
                        continue
                    if fields.get("event") == "completed":
                        return
                    if fields.get("event") == "failed":
                        raise RuntimeError(f"job {job_id} failed: {fields.get('failedReason')}")
        raise TimeoutError(f"job {job_id} did not complete within {_COMPLETION_TIMEOUT_S:.0f} s")

    async def aclose(self) -> None:
        """Close the watcher's connection."""
        await self._client.aclose()


async def sample_latencies(
    producer: Producer, wait: Callable[[str], Awaitable[None]], samples: int, warmup: int
) -> list[float]:
    """Add-to-completed wall-clock latencies (ms), one job at a time, a worker running.

    ``wait(job_id)`` returns once the job is done: the library's own wait (queuekit's
    ``wait_for_job``) or :meth:`CompletionWatcher.wait_completed`. The first ``warmup``
    samples (connection set-up, the worker's first block) are dropped.
    """
    latencies: list[float] = []
    for index in range(warmup + samples):
        started = time.perf_counter()
        job_id = await producer.add_one(index)
        await wait(job_id)
        if index >= warmup:
            latencies.append((time.perf_counter() - started) * 1000.0)
    return latencies


@dataclass
class WorkerReport:
    """What a worker subprocess reports (the Node worker reports the same keys)."""

    processed: int
    failed: int = 0
    elapsed_s: float | None = None
    """Worker start until the expected jobs were all finished (None: no target)."""
    rss_start: int = 0
    rss_at: dict[int, int] = field(default_factory=dict)
    """RSS in bytes when the n-th job was processed, for each checkpoint n."""
    rss_end: int = 0
    close_s: float = 0.0
    """How long closing the worker took (graceful close, after the measurement)."""

    def to_json(self) -> dict[str, Any]:
        """The JSON object printed by the worker subprocess."""
        return {
            "event": "result",
            "processed": self.processed,
            "failed": self.failed,
            "elapsed_s": self.elapsed_s,
            "rss_start": self.rss_start,
            "rss_at": {str(k): v for k, v in self.rss_at.items()},
            "rss_end": self.rss_end,
            "close_s": self.close_s,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> WorkerReport:
        """Parse the result line of a Python or Node worker subprocess."""
        elapsed = data.get("elapsed_s")
        return cls(
            processed=int(data["processed"]),
            failed=int(data.get("failed", 0)),
            elapsed_s=float(elapsed) if elapsed is not None else None,
            rss_start=int(data.get("rss_start", 0)),
            rss_at={int(k): int(v) for k, v in dict(data.get("rss_at", {})).items()},
            rss_end=int(data.get("rss_end", 0)),
            close_s=float(data.get("close_s", 0.0)),
        )


async def _drained(session: WorkerSession, *, delayed_remain: bool) -> JobCounts:
    """Poll the counts until nothing waits or runs (or is delayed, unless
    ``delayed_remain``); the last counts."""
    while True:
        counts = await session.job_counts()
        left = counts.waiting + counts.active if delayed_remain else counts.pending
        if left == 0:
            return counts
        await asyncio.sleep(_IDLE_POLL_S)


async def run_worker(
    session: WorkerSession,
    *,
    concurrency: int,
    expect: int,
    rss_checkpoints: frozenset[int],
    on_ready: Callable[[], None],
    until_stopped: Callable[[], Awaitable[None]],
    delayed_remain: bool = False,
) -> WorkerReport:
    """Run ``session`` until ``expect`` jobs are finished (or, with ``expect == 0``, until
    ``until_stopped()`` returns) and report the time and memory.

    The clock starts just before the worker is started; the end is confirmed by the
    queue's own counts (nothing waiting, active or delayed; with ``delayed_remain``
    delayed jobs may stay: a job scheduler's next runs) once the processor has seen the
    expected number of jobs.
    """
    report = WorkerReport(processed=0, rss_start=rss_bytes())
    all_seen = asyncio.Event()

    def on_processed() -> None:
        report.processed += 1
        if report.processed in rss_checkpoints:
            report.rss_at[report.processed] = rss_bytes()
        if expect and report.processed >= expect:
            all_seen.set()

    started = time.perf_counter()
    await session.start(concurrency, on_processed)
    on_ready()
    if expect:
        await all_seen.wait()
        counts = await _drained(session, delayed_remain=delayed_remain)
        report.elapsed_s = time.perf_counter() - started
        report.failed = counts.failed
    else:
        await until_stopped()
    report.rss_end = rss_bytes()
    closing = time.perf_counter()
    await session.aclose()
    report.close_s = time.perf_counter() - closing
    log.info("worker processed %d jobs (%d failed)", report.processed, report.failed)
    return report


async def serve_worker_slices(
    session: WorkerSession,
    producer: Producer,
    *,
    concurrency: int,
    lines: Callable[[], Awaitable[str]],
    emit: Callable[[dict[str, Any]], None],
) -> WorkerReport:
    """The worker's side of :mod:`benchmarks.interleave`. The queue is paused before the
    worker starts; ``{"op": "fill", "first", "count"}`` adds those jobs to the paused
    queue, ``{"op": "process", "count"}`` resumes it, waits until ``count`` more jobs are
    done (the processor saw them and the counts show nothing waiting or running) and
    pauses it again. Each is answered with ``{"event": "slice", "seconds": ...}``; a
    process's seconds run from resuming to done."""
    report = WorkerReport(processed=0, rss_start=rss_bytes())
    target = 0
    all_seen = asyncio.Event()

    def on_processed() -> None:
        report.processed += 1
        if report.processed >= target:
            all_seen.set()

    await session.set_paused(True)
    await session.start(concurrency, on_processed)
    emit({"event": "ready"})
    while line := await lines():
        if not line.strip():
            continue
        command = json.loads(line)
        started = time.perf_counter()
        if command.get("op") == "fill":
            await add_in_chunks(producer, command["first"], command["count"], _SESSION_CHUNK)
            seconds = time.perf_counter() - started
        elif command.get("op") == "process":
            target = report.processed + command["count"]
            all_seen.clear()
            await session.set_paused(False)
            await all_seen.wait()
            report.failed = (await _drained(session, delayed_remain=False)).failed
            seconds = time.perf_counter() - started
            await session.set_paused(True)  # after the clock: the next fill waits unseen
        else:
            raise ValueError(f"unknown op {command.get('op')!r}")
        emit({"event": "slice", "seconds": seconds})
    report.rss_end = rss_bytes()
    closing = time.perf_counter()
    await session.aclose()
    report.close_s = time.perf_counter() - closing
    return report
