"""Plain-``def`` processors run off the event loop, so CPU work never costs a lock.

A worker renews its jobs' locks and fetches the next jobs on its event loop; a processor
that computes for seconds on that loop stops all of it (the lock expires, another worker
runs the job again). :func:`run_sync` runs a plain function of a :class:`JobContext` in a
:class:`SyncPool` instead, one pool per queue (``worker.sync_pool``):

- :class:`ThreadSyncPool` (``thread``, the default): ``concurrency`` threads. The
  function gets the worker's own context object (what the worker sets on it stays
  visible); its ``job.update_progress_sync`` / ``job.log_sync`` hand the update to the
  worker's loop (``asyncio.run_coroutine_threadsafe``) and wait until it is stored. Pure
  Python computation still shares the GIL with the loop, which then runs at every switch
  interval (5 ms): enough to renew locks and keep other queues flowing, not to parallelise
  CPU work; C code that releases the GIL (hashlib, zlib, numpy) runs in parallel.
- :class:`ProcessSyncPool` (``process``): processes started with ``spawn`` (never a fork
  of a process with an event loop and threads), at most one per core. The function, the
  payload and the result must pickle (a module-level function or a ``WorkerHost`` whose
  instance pickles). The function gets a copy of the context (identity, payload,
  attempts, progress: nothing the worker changes later); progress and log lines travel
  back over one queue per pool, in order, and a job's result is returned after its last
  update was applied.

Neither pool can stop a function half way: a forced close (``worker.shutdown_timeout``)
leaves a thread to finish its call (its result is dropped, the job is run again);
closing a process pool terminates its processes.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import ctypes
import ctypes.util
import inspect
import itertools
import logging
import multiprocessing
import os
import signal
import sys
import threading
from collections.abc import Callable, Coroutine, Mapping
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from typing import Any, ClassVar

from queuekit.errors import WorkerError
from queuekit.jobs import JobContext, JobReporter, Progress, check_progress
from queuekit.settings import SyncPoolKind

log = logging.getLogger("queuekit.offload")

#: A plain-def processor, as the pools call it.
SyncFunction = Callable[[JobContext[Any]], Any]
#: Seconds a process pool's job waits for its last progress message after returning.
_DRAIN_TIMEOUT = 10.0
_PR_SET_PDEATHSIG = 1


def set_parent_death_signal(sig: int = signal.SIGTERM) -> bool:
    """Ask Linux to send ``sig`` to this process when its parent dies (``prctl
    PR_SET_PDEATHSIG``); False where that is not available (another OS)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return int(libc.prctl(_PR_SET_PDEATHSIG, int(sig), 0, 0, 0)) == 0
    except (OSError, AttributeError):
        return False


class _LoopBridge:
    """The reporter of a context while its processor runs in a worker thread: the
    blocking methods run the context's own actions on the worker's loop."""

    def __init__(self, job: JobContext[Any], reporter: JobReporter,
                 loop: asyncio.AbstractEventLoop) -> None:
        self.job = job
        self.reporter = reporter
        self._loop = loop

    async def update_progress(self, progress: Progress) -> None:
        await self.reporter.update_progress(progress)

    async def log(self, text: str) -> None:
        await self.reporter.log(text)

    def update_progress_sync(self, progress: int | Mapping[str, Any]) -> None:
        self._call(self.job.update_progress(progress))  # validated and recorded there

    def log_sync(self, text: str) -> None:
        self._call(self.job.log(text))

    def _call(self, update: Coroutine[Any, Any, None]) -> None:
        with contextlib.suppress(RuntimeError):
            if asyncio.get_running_loop() is self._loop:
                update.close()
                raise WorkerError("a *_sync job method was called on the event loop itself; "
                                  "it would wait for itself")
        asyncio.run_coroutine_threadsafe(update, self._loop).result()


async def _in_thread(executor: ThreadPoolExecutor | None, function: SyncFunction,
                     job: JobContext[Any]) -> Any:
    """``function(job)`` in ``executor``, with ``job`` itself (not a copy, so what the
    worker sets on it, such as ``cancelled``, stays visible) bridged for the blocking
    methods while the call runs."""
    loop = asyncio.get_running_loop()
    original = job._reporter
    job._reporter = _LoopBridge(job, original, loop)
    try:
        return await loop.run_in_executor(executor, function, job)
    finally:
        job._reporter = original


class SyncPool(abc.ABC):
    """Where the plain-def processor of one queue runs; :meth:`close` releases it."""

    kind: ClassVar[SyncPoolKind]

    def __init__(self, queue: str, size: int) -> None:
        self.queue = queue
        self.size = size
        self.closed = False

    @abc.abstractmethod
    async def run(self, function: SyncFunction, job: JobContext[Any]) -> Any:
        """``function(job)`` off the event loop; its return value."""

    def close(self) -> None:
        """Release the threads or processes (a running call cannot be interrupted)."""
        self.closed = True

    def _check_open(self) -> None:
        if self.closed:
            raise WorkerError(f"the {self.kind} pool of queue {self.queue!r} is closed")


class ThreadSyncPool(SyncPool):
    """``size`` threads of the worker's process."""

    kind = "thread"

    def __init__(self, queue: str, size: int) -> None:
        super().__init__(queue, size)
        self._executor = ThreadPoolExecutor(max_workers=size,
                                            thread_name_prefix=f"queuekit-{queue}")

    async def run(self, function: SyncFunction, job: JobContext[Any]) -> Any:
        self._check_open()
        return await _in_thread(self._executor, function, job)

    def close(self) -> None:
        super().close()
        self._executor.shutdown(wait=False, cancel_futures=True)


# -- the process pool ------------------------------------------------------------------

_child_messages: Any = None


def _child_init(messages: Any) -> None:
    global _child_messages
    _child_messages = messages
    # A pool process computes only: it goes when the worker process goes, even on kill -9.
    set_parent_death_signal(signal.SIGKILL)


class _ChildReporter:
    """The reporter of a context in a pool process: updates go back over the queue."""

    def __init__(self, token: int) -> None:
        self._token = token
        self.job: JobContext[Any] | None = None

    def update_progress_sync(self, progress: int | Mapping[str, Any]) -> None:
        value = check_progress(progress)
        _child_messages.put((self._token, "progress", value))
        if self.job is not None:
            self.job.progress = value

    def log_sync(self, text: str) -> None:
        _child_messages.put((self._token, "log", text))

    async def update_progress(self, progress: Progress) -> None:
        self.update_progress_sync(progress)

    async def log(self, text: str) -> None:
        self.log_sync(text)


def _child_run(function: SyncFunction, token: int, fields: dict[str, Any]) -> Any:
    try:
        reporter = _ChildReporter(token)
        reporter.job = JobContext(reporter=reporter, **fields)
        result = function(reporter.job)
        if inspect.isawaitable(result):
            raise WorkerError("a processor in the process pool must be a plain def")
        return result
    finally:
        _child_messages.put((token, "end", None))


class _Relay:
    """The updates of one job in a pool process, applied on the loop in their order."""

    def __init__(self, job: JobContext[Any]) -> None:
        self.job = job
        self.updates: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.task = asyncio.ensure_future(self._apply())

    async def _apply(self) -> None:
        while True:
            kind, value = await self.updates.get()
            if kind == "end":
                return
            try:
                if kind == "progress":
                    await self.job.update_progress(value)
                else:
                    await self.job.log(value)
            except Exception:
                log.exception("job %s on %s: %s update from the process pool failed",
                              self.job.id, self.job.queue, kind,
                              extra={"queue": self.job.queue, "job_id": self.job.id})


class ProcessSyncPool(SyncPool):
    """Up to ``size`` processes (never more than the cores), started with ``spawn``."""

    kind = "process"

    def __init__(self, queue: str, size: int) -> None:
        super().__init__(queue, min(size, os.cpu_count() or 1))
        self._context = multiprocessing.get_context("spawn")
        self._messages = self._context.SimpleQueue()
        self._executor = self._new_executor()
        self._tokens = itertools.count(1)
        self._relays: dict[int, _Relay] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._reader: threading.Thread | None = None

    def _new_executor(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(max_workers=self.size, mp_context=self._context,
                                   initializer=_child_init, initargs=(self._messages,))

    async def run(self, function: SyncFunction, job: JobContext[Any]) -> Any:
        self._check_open()
        if self._reader is None:
            self._loop = asyncio.get_running_loop()
            self._reader = threading.Thread(target=self._read, daemon=True,
                                            name=f"queuekit-{self.queue}-relay")
            self._reader.start()
        token = next(self._tokens)
        relay = self._relays[token] = _Relay(job)
        fields = {"id": job.id, "name": job.name, "queue": job.queue, "data": job.data,
                  "attempts_made": job.attempts_made, "max_attempts": job.max_attempts,
                  "progress": job.progress}
        executor = self._executor
        try:
            try:
                result = await asyncio.wrap_future(
                    executor.submit(_child_run, function, token, fields))
            except BrokenProcessPool as exc:
                # A pool process died (killed, out of memory): this attempt fails, the
                # next jobs get a fresh pool.
                if self._executor is executor and not self.closed:
                    log.warning("the process pool of %s broke (%s); starting a new one",
                                self.queue, exc, extra={"queue": self.queue})
                    executor.shutdown(wait=False, cancel_futures=True)
                    self._executor = self._new_executor()
                raise WorkerError(f"the pool process running job {job.id} of {self.queue!r} "
                                  f"died: {exc}") from None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(relay.task), _DRAIN_TIMEOUT)
            return result
        finally:
            relay.task.cancel()
            del self._relays[token]

    def _read(self) -> None:
        while True:
            message = self._messages.get()
            if message is None:
                return
            token, kind, value = message
            assert self._loop is not None
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                self._loop.call_soon_threadsafe(self._deliver, token, kind, value)

    def _deliver(self, token: int, kind: str, value: Any) -> None:
        relay = self._relays.get(token)
        if relay is not None:
            relay.updates.put_nowait((kind, value))

    def close(self) -> None:
        if self.closed:
            return
        super().close()
        processes = list(getattr(self._executor, "_processes", {}).values())
        self._executor.shutdown(wait=False, cancel_futures=True)
        for process in processes:  # a running call cannot be cancelled: end its process
            with contextlib.suppress(Exception):
                process.terminate()
        if self._reader is not None:
            self._messages.put(None)


def make_pool(kind: SyncPoolKind, queue: str, size: int) -> SyncPool:
    """A new pool of ``kind`` for ``queue``, sized for ``size`` jobs at once."""
    return ProcessSyncPool(queue, size) if kind == "process" else ThreadSyncPool(queue, size)


async def run_sync(function: SyncFunction, job: JobContext[Any],
                   pool: SyncPool | None = None) -> Any:
    """``function(job)`` in ``pool`` (None: a thread of the loop's default executor).

    A function that turns out to return an awaitable (a lambda around an async
    function) has it awaited on the loop.
    """
    if pool is None:
        result = await _in_thread(None, function, job)
    else:
        result = await pool.run(function, job)
    if inspect.isawaitable(result):
        result = await result
    return result
