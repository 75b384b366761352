"""What the suite asks of each implementation, and the one class serving both Python sides.

The suite (:mod:`benchmarks.suite`) talks to every implementation through
:class:`Implementation`. :class:`PythonImplementation` fulfils it for any
:class:`~benchmarks.sides.PythonSide` with the shared code of :mod:`benchmarks.measure`
(producers in this process, each worker in a subprocess of its own);
:class:`benchmarks.node_side.NodeImplementation` fulfils it with Node subprocesses.
"""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

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


class Adder(Protocol):
    """A producer kept open on one queue, timing slices of adds (see
    :mod:`benchmarks.interleave`). Each call adds jobs ``first .. first + count - 1`` and
    returns the seconds it took; the warm-up add happened when it was opened."""

    async def add_one(self, first: int, count: int) -> float:
        """One add at a time, each awaited."""
        ...

    async def add_in_flight(self, first: int, count: int, window: int) -> float:
        """``window`` adds in flight."""
        ...

    async def add_bulk(self, first: int, count: int, chunk: int) -> float:
        """Bulk calls of ``chunk`` jobs."""
        ...


class Implementation(Protocol):
    """One implementation under test, as the suite drives it. Times are in seconds."""

    key: str
    label: str

    def versions(self) -> dict[str, str]:
        """Versions worth reporting."""
        ...

    def open_adder(self, queue: str, warm_up_index: int) -> AbstractAsyncContextManager[Adder]:
        """An :class:`Adder` on ``queue``, warmed up with one add of job ``warm_up_index``."""
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

    def open_adder(self, queue: str, warm_up_index: int) -> AbstractAsyncContextManager[Adder]:
        argv = [
            sys.executable, "-m", "benchmarks.producer_proc",
            "--side", self.key,
            "--redis-url", self._settings.redis_url,
            "--queue", queue,
            "--warm-up-index", str(warm_up_index),
            "--job-options", json.dumps(job_options(self._settings.job_options)),
            "--loop", self._settings.loop,
        ]
        child = JsonLineProcess(argv, cwd=REPO_ROOT, env=python_env(),
                                name=f"{self.key} producer")
        return adder_session(child, self._settings.ready_timeout_s)

    async def preload(self, queue: str, jobs: int, chunk: int) -> None:
        async with self._producer(queue) as producer:
            await measure.add_in_chunks(producer, 0, jobs, chunk)

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



class SessionAdder:
    """:class:`Adder` of a producer subprocess in session mode (``producer.mjs session``,
    :mod:`benchmarks.producer_proc`): each slice is one command on its stdin, timed by the
    child itself."""

    def __init__(self, child: JsonLineProcess) -> None:
        self._child = child

    async def _slice(self, command: dict[str, Any]) -> float:
        await self._child.send(command)
        reply = await self._child.expect_event("slice", worker_timeout(command["count"]))
        return float(reply["seconds"])

    async def add_one(self, first: int, count: int) -> float:
        return await self._slice({"op": "add-one", "first": first, "count": count})

    async def add_in_flight(self, first: int, count: int, window: int) -> float:
        return await self._slice(
            {"op": "in-flight", "first": first, "count": count, "window": window}
        )

    async def add_bulk(self, first: int, count: int, chunk: int) -> float:
        return await self._slice({"op": "bulk", "first": first, "count": count, "chunk": chunk})


@asynccontextmanager
async def adder_session(child: JsonLineProcess, ready_timeout_s: float) -> AsyncIterator[Adder]:
    """Start ``child``, wait for its warm-up, hand out its adder; at the end close its
    stdin and wait for its result (it is killed by pid if anything raised)."""
    async with child:
        await child.expect_event("ready", ready_timeout_s)
        yield SessionAdder(child)
        child.close_stdin()
        await child.expect_event("result", ready_timeout_s)
