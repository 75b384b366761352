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
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from typing import Any, Protocol

from benchmarks import measure
from benchmarks.common import REPO_ROOT, JobOptionsMode, LoopName, job_options
from benchmarks.measure import WorkerReport
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


class SliceSession(Protocol):
    """A producer or a worker kept open on one queue in a child process of its side,
    timing slices of work (see :mod:`benchmarks.interleave`)."""

    result: dict[str, Any]
    """The child's last message (its report), once the session is closed."""
    last_reply: dict[str, Any]
    """The answer to the latest slice (a latency slice's ``latencies_ms``)."""

    async def run_slice(self, command: Mapping[str, Any]) -> float:
        """Do ``command`` (``{"op", "first", "count", ...}``: jobs ``first .. first +
        count - 1``); the seconds it took, as the child measured them."""
        ...


class Implementation(Protocol):
    """One implementation under test, as the suite drives it. Times are in seconds."""

    key: str
    label: str

    def versions(self) -> dict[str, str]:
        """Versions worth reporting."""
        ...

    def open_adder(
        self, queue: str, warm_up_index: int
    ) -> AbstractAsyncContextManager[SliceSession]:
        """A producer session on ``queue`` (ops ``add-one``, ``in-flight``, ``bulk``),
        warmed up with one add of job ``warm_up_index``."""
        ...

    def open_worker(
        self, queue: str, concurrency: int
    ) -> AbstractAsyncContextManager[SliceSession]:
        """A worker session on ``queue`` (op ``process``: add the jobs to the paused queue,
        time from resuming it until they are done)."""
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

    def running_worker(self, queue: str) -> AbstractAsyncContextManager[None]:
        """A worker at concurrency 1 on ``queue`` in a process of its own, running while
        the block runs (for the latency slices of a producer session)."""
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

    def open_adder(
        self, queue: str, warm_up_index: int
    ) -> AbstractAsyncContextManager[SliceSession]:
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
        return child_session(child, self._settings.ready_timeout_s)

    def open_worker(
        self, queue: str, concurrency: int
    ) -> AbstractAsyncContextManager[SliceSession]:
        child = self._worker(queue, 0, concurrency, [], session=True)
        return child_session(child, self._settings.ready_timeout_s)

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
        delayed_remain: bool = False, session: bool = False,
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
            *(["--session", "--job-options", json.dumps(job_options(self._settings.job_options))]
              if session else []),
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

    def running_worker(self, queue: str) -> AbstractAsyncContextManager[None]:
        return worker_running(self._worker(queue, 0, 1, []), self._settings.ready_timeout_s)


class ChildSession:
    """:class:`SliceSession` of a child in session mode (``producer.mjs session``,
    ``worker.mjs`` with ``session``, :mod:`benchmarks.producer_proc`,
    :mod:`benchmarks.worker_proc` ``--session``): each slice is one command on its
    stdin, timed by the child itself."""

    def __init__(self, child: JsonLineProcess) -> None:
        self._child = child
        self.result: dict[str, Any] = {}
        self.last_reply: dict[str, Any] = {}

    async def run_slice(self, command: Mapping[str, Any]) -> float:
        await self._child.send(dict(command))
        reply = await self._child.expect_event("slice", worker_timeout(int(command["count"])))
        self.last_reply = reply
        return float(reply["seconds"])


@asynccontextmanager
async def child_session(
    child: JsonLineProcess, ready_timeout_s: float, result_timeout_s: float | None = None
) -> AsyncIterator[SliceSession]:
    """Start ``child``, wait until it is ready, hand out its session; at the end close its
    stdin and wait for its result (``result_timeout_s``, by default as long as for ready;
    it is killed by pid if anything raised)."""
    async with child:
        await child.expect_event("ready", ready_timeout_s)
        session = ChildSession(child)
        yield session
        child.close_stdin()
        session.result = await child.expect_event(
            "result", ready_timeout_s if result_timeout_s is None else result_timeout_s)


@asynccontextmanager
async def worker_running(child: JsonLineProcess, ready_timeout_s: float) -> AsyncIterator[None]:
    """Start the worker ``child`` (run until stdin closes), wait until it is ready; at the
    end close its stdin and wait for its report (killed by pid if anything raised)."""
    async with child_session(child, ready_timeout_s, worker_timeout(0)):
        yield
