"""What the suite asks of each implementation, and the one class serving both Python sides.

The suite (:mod:`benchmarks.suite`) talks to every implementation through
:class:`Implementation`. :class:`PythonImplementation` fulfils it for any
:class:`~benchmarks.sides.PythonSide` with the shared code of :mod:`benchmarks.measure`
(producers in this process, each worker in a subprocess of its own);
:class:`benchmarks.node_side.NodeImplementation` fulfils it with Node subprocesses.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Protocol

from benchmarks import measure
from benchmarks.common import REPO_ROOT, JobOptionsMode, LoopName, job_options
from benchmarks.measure import CompletionWatcher, WorkerReport
from benchmarks.procs import JsonLineProcess, python_env
from benchmarks.sides import Producer, PythonSide


@dataclass(frozen=True)
class Settings:
    """Run-wide settings every implementation receives."""

    redis_url: str
    loop: LoopName
    job_options: JobOptionsMode
    ready_timeout_s: float = 60.0


def worker_timeout(jobs: int) -> float:
    """How long a worker may take for ``jobs`` jobs before it counts as hung (>= 100 jobs/s)."""
    return 120.0 + jobs / 100.0


class Implementation(Protocol):
    """One implementation under test, as the suite drives it. Times are in seconds."""

    key: str
    label: str

    def versions(self) -> dict[str, str]:
        """Versions worth reporting."""
        ...

    async def add_one(self, queue: str, jobs: int) -> float:
        """Time to add ``jobs`` jobs one at a time (sequential awaits)."""
        ...

    async def add_many_in_flight(self, queue: str, jobs: int, window: int) -> float:
        """Time to add ``jobs`` jobs with ``window`` adds in flight."""
        ...

    async def add_bulk(self, queue: str, jobs: int, chunk: int) -> float:
        """Time to add ``jobs`` jobs in bulk calls of ``chunk``."""
        ...

    async def preload(self, queue: str, jobs: int, chunk: int) -> None:
        """Add ``jobs`` jobs for a worker measurement (untimed)."""
        ...

    async def run_worker_process(
        self, queue: str, jobs: int, concurrency: int, rss_checkpoints: list[int],
        delayed_remain: bool = False,
    ) -> WorkerReport:
        """Process ``jobs`` pre-added jobs in a worker process of its own (with
        ``delayed_remain``, delayed jobs may be left: job schedulers' next runs)."""
        ...

    async def latencies(self, queue: str, samples: int, warmup: int) -> dict[str, list[float]]:
        """Add-to-completed latencies (ms) of jobs added one at a time, a worker running:
        ``app`` through the library's own wait, ``stream`` through the shared reader of
        the events stream (the same for every implementation)."""
        ...


class PythonImplementation:
    """:class:`Implementation` for a Python side, built from the shared measurement code."""

    def __init__(self, side: PythonSide, settings: Settings) -> None:
        self._side = side
        self._settings = settings
        self.key = side.key
        self.label = side.label

    def versions(self) -> dict[str, str]:
        return self._side.versions()

    @asynccontextmanager
    async def _producer(self, queue: str) -> AsyncIterator[Producer]:
        producer = await self._side.open_producer(
            self._settings.redis_url, queue, job_options(self._settings.job_options)
        )
        try:
            yield producer
        finally:
            await producer.aclose()

    async def add_one(self, queue: str, jobs: int) -> float:
        async with self._producer(queue) as producer:
            return await measure.time_add_one(producer, jobs)

    async def add_many_in_flight(self, queue: str, jobs: int, window: int) -> float:
        async with self._producer(queue) as producer:
            return await measure.time_add_in_flight(producer, jobs, window)

    async def add_bulk(self, queue: str, jobs: int, chunk: int) -> float:
        async with self._producer(queue) as producer:
            return await measure.time_add_bulk(producer, jobs, chunk)

    async def preload(self, queue: str, jobs: int, chunk: int) -> None:
        async with self._producer(queue) as producer:
            await measure.add_in_chunks(producer, jobs, chunk)

    async def preload_scheduled(self, queue: str, jobs: int) -> bool:
        """Fill ``queue`` with the first runs of ``jobs`` job schedulers (each then due
        again in an hour); False if this side has no schedulers."""
        async with self._producer(queue) as producer:
            add = getattr(producer, "add_schedulers", None)
            if add is None:
                return False
            await add(jobs)
            return True

    def _worker(
        self, queue: str, jobs: int, concurrency: int, rss_checkpoints: list[int],
        delayed_remain: bool = False,
    ) -> JsonLineProcess:
        argv = [
            sys.executable,
            "-m",
            "benchmarks.worker_proc",
            "--side",
            self.key,
            "--redis-url",
            self._settings.redis_url,
            "--queue",
            queue,
            "--concurrency",
            str(concurrency),
            "--expect",
            str(jobs),
            "--rss-at",
            ",".join(str(n) for n in rss_checkpoints),
            "--loop",
            self._settings.loop,
            *(["--delayed-remain"] if delayed_remain else []),
        ]
        return JsonLineProcess(argv, cwd=REPO_ROOT, env=python_env(), name=f"{self.key} worker")

    async def run_worker_process(
        self, queue: str, jobs: int, concurrency: int, rss_checkpoints: list[int],
        delayed_remain: bool = False,
    ) -> WorkerReport:
        async with self._worker(queue, jobs, concurrency, rss_checkpoints,
                                delayed_remain) as worker:
            await worker.expect_event("ready", self._settings.ready_timeout_s)
            result = await worker.expect_event("result", worker_timeout(jobs))
        return WorkerReport.from_json(result)

    async def latencies(self, queue: str, samples: int, warmup: int) -> dict[str, list[float]]:
        async with self._worker(queue, 0, 1, []) as worker, self._producer(queue) as producer:
            await worker.expect_event("ready", self._settings.ready_timeout_s)
            app = await measure.sample_latencies(producer, producer.wait_finished, samples,
                                                 warmup)
            watcher = CompletionWatcher(self._settings.redis_url, producer.events_key)
            try:
                await watcher.seek_end()
                stream = await measure.sample_latencies(producer, watcher.wait_completed,
                                                        samples, warmup)
            finally:
                await watcher.aclose()
            worker.close_stdin()
            await worker.expect_event("result", worker_timeout(0))
        return {"app": app, "stream": stream}
