"""``queuekit worker --processes N``: N worker processes under one supervisor.

Each child runs what ``queuekit worker`` runs in one process
(:func:`queuekit.runtime.runner.run_workers`), started with ``spawn`` (a fresh interpreter:
no event loop, thread or connection inherited). The supervisor:

- **restarts** a child that exits while it should run, after a back-off (``backoff``
  seconds, doubled for each exit in the last ``restart_window`` seconds, at most
  ``backoff_cap``). More than ``max_restarts`` exits within the window is a crash loop:
  the other children are stopped and :class:`WorkerError` says which process exited how
  (``queuekit worker`` then exits 2). A child that exits with 2 (bad configuration, Redis
  unreachable at start-up, as a single ``queuekit worker`` would) stops everything at
  once: restarting would not help.
- **forwards** SIGTERM and SIGINT: every child gets SIGTERM and shuts down gracefully
  (active jobs get ``worker.shutdown_timeout`` seconds); the supervisor waits for them
  (that timeout plus :data:`EXIT_GRACE`), kills any that is still there, and exits 0 when
  all exited cleanly.
- makes sure **no child outlives it**: on Linux each child asks the kernel for SIGTERM
  when the supervisor dies (``prctl(PR_SET_PDEATHSIG)``, so even ``kill -9`` of the
  supervisor ends them gracefully), and everywhere a thread of the child watches the
  supervisor's process sentinel and sends the child SIGTERM when it goes.
- serves **one metrics endpoint** for all of them (``--metrics-port``): the children
  count in prometheus-client's multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``, a
  temporary directory the supervisor creates and removes), the supervisor aggregates.
  Counters and the duration histogram are summed over the processes (a replaced child's
  counts stay in the totals); ``queuekit_queue_jobs`` shows the latest reading of a live
  child. ``queuekit health`` counts the workers of every process (each has its own
  worker name in Redis).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import deque
from dataclasses import dataclass, replace
from types import FrameType
from typing import Any

from queuekit.errors import ConfigurationError, QueuekitError, WorkerError
from queuekit.offload import set_parent_death_signal
from queuekit.runtime.host import HostFactory
from queuekit.runtime.runner import STOP_SIGNALS, WorkerOptions, run_workers
from queuekit.settings import QueuekitSettings

log = logging.getLogger("queuekit.supervisor")

#: Seconds a child may take beyond ``worker.shutdown_timeout`` to exit (closing
#: connections, a forced close's clean-up) before the supervisor kills it.
EXIT_GRACE = 10.0
#: The exit code of a worker that could not start (configuration, Redis unreachable).
CANNOT_START = 2
_MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def cpu_count() -> int:
    """The cores this process may run on (``--processes auto``)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)  # pragma: no cover - not Linux


@dataclass(frozen=True)
class SupervisorOptions:
    """How many children, and when a crashing child is given up on."""

    processes: int
    max_restarts: int = 5
    restart_window: float = 60.0
    backoff: float = 0.5
    backoff_cap: float = 10.0


def describe_exit(code: int | None) -> str:
    """``exit code 3`` or ``killed by SIGKILL``."""
    if code is None:
        return "no exit code"
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
        return f"killed by signal {-code}"  # pragma: no cover - an unknown signal
    return f"exit code {code}"


# -- the child ---------------------------------------------------------------------------

def _watch_parent(parent_pid: int) -> None:
    parent = multiprocessing.parent_process()
    if parent is not None:
        multiprocessing.connection.wait([parent.sentinel])
    elif os.getppid() == parent_pid:  # pragma: no cover - spawn always has a parent
        return
    log.warning("the supervisor (pid %d) is gone; shutting down", parent_pid)
    os.kill(os.getpid(), signal.SIGTERM)


def _child_main(index: int, settings: QueuekitSettings, open_host: HostFactory,
                options: WorkerOptions, log_level: int, log_format: str,
                parent_pid: int) -> None:
    set_parent_death_signal(signal.SIGTERM)
    if os.getppid() != parent_pid:  # the supervisor died before prctl took effect
        sys.exit(1)
    threading.Thread(target=_watch_parent, args=(parent_pid,), daemon=True,
                     name="queuekit-parent-watch").start()
    logging.basicConfig(level=log_level, format=log_format)
    try:
        asyncio.run(run_workers(settings, open_host, options))
    except QueuekitError as exc:
        log.error("worker process %d cannot start: %s", index, exc)
        sys.exit(CANNOT_START)


def _log_config() -> tuple[int, str]:
    root = logging.getLogger()
    fmt = "%(asctime)s %(levelname)s %(name)s: %(message)s"
    for handler in root.handlers:
        if handler.formatter is not None and handler.formatter._fmt:
            fmt = handler.formatter._fmt
            break
    return root.getEffectiveLevel(), fmt


# -- the supervisor ----------------------------------------------------------------------

@dataclass
class _Child:
    index: int
    process: Any = None  # multiprocessing.Process (SpawnProcess)
    restart_at: float | None = None


class Supervisor:
    """Runs ``options.processes`` worker processes until SIGTERM/SIGINT; see the module."""

    def __init__(self, settings: QueuekitSettings, open_host: HostFactory,
                 worker: WorkerOptions, options: SupervisorOptions) -> None:
        if options.processes < 1:
            raise ConfigurationError(f"--processes must be >= 1, got {options.processes}")
        self.settings = settings
        self.open_host = open_host
        self.worker = worker
        self.options = options
        self._context = multiprocessing.get_context("spawn")
        self._children = [_Child(i + 1) for i in range(options.processes)]
        self._exits: deque[float] = deque()
        self._stopping: str | None = None
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._metrics_dir: str | None = None
        self._metrics_server: Any = None

    # -- running -------------------------------------------------------------------

    def run(self) -> int:
        """Supervise until a stop signal; the exit code (0: every child stopped cleanly)."""
        previous = {sig: signal.signal(sig, self._on_signal) for sig in STOP_SIGNALS}
        try:
            self._start_metrics()
            for child in self._children:
                self._start(child)
            failure = self._supervise()
            code = self._stop_all()
            if failure is not None:
                raise failure
            return code
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self._close_metrics()
            os.close(self._wake_r)
            os.close(self._wake_w)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self._stopping is None:
            self._stopping = name
        with contextlib.suppress(OSError):
            os.write(self._wake_w, b"x")

    def _start(self, child: _Child) -> None:
        level, fmt = _log_config()
        worker = self.worker
        if self._metrics_dir is not None:
            worker = replace(worker, metrics_server=False)
        process = self._context.Process(
            target=_child_main, name=f"queuekit-worker-{child.index}",
            args=(child.index, self.settings, self.open_host, worker, level, fmt,
                  os.getpid()))
        process.start()
        child.process, child.restart_at = process, None
        log.info("worker process %d started (pid %d)", child.index, process.pid)

    def _supervise(self) -> WorkerError | None:
        """Wait for exits and restart; return the crash-loop error, if it came to that."""
        while self._stopping is None:
            running = {c.process.sentinel: c for c in self._children
                       if c.process is not None}
            due = [c.restart_at for c in self._children if c.restart_at is not None]
            timeout = max(0.0, min(due) - time.monotonic()) if due else None
            ready = multiprocessing.connection.wait([*running, self._wake_r], timeout)
            if self._wake_r in ready:
                with contextlib.suppress(BlockingIOError):
                    os.read(self._wake_r, 64)
            for sentinel in ready:
                child = running.get(sentinel)
                if child is not None and self._stopping is None:
                    failure = self._exited(child)
                    if failure is not None:
                        return failure
            now = time.monotonic()
            for child in self._children:
                if child.restart_at is not None and child.restart_at <= now \
                        and self._stopping is None:
                    self._start(child)
        log.info("received %s; stopping %d worker process(es)", self._stopping,
                 sum(c.process is not None for c in self._children))
        return None

    def _exited(self, child: _Child) -> WorkerError | None:
        process, child.process = child.process, None
        process.join()
        self._forget_metrics(process.pid)
        how = describe_exit(process.exitcode)
        now = time.monotonic()
        self._exits.append(now)
        while self._exits and self._exits[0] < now - self.options.restart_window:
            self._exits.popleft()
        if process.exitcode == CANNOT_START:
            log.error("worker process %d (pid %d) could not start (%s); stopping",
                      child.index, process.pid, how)
            return WorkerError(
                f"worker process {child.index} (pid {process.pid}) could not start "
                f"({how}; its reason is logged above)")
        recent = len(self._exits)
        if recent > self.options.max_restarts:
            message = (
                f"worker process {child.index} (pid {process.pid}) exited ({how}); "
                f"{recent} exits within {self.options.restart_window:g} s is more than "
                f"--max-restarts {self.options.max_restarts}: giving up (a crash loop; see "
                "the workers' log above)")
            log.error("%s", message)
            return WorkerError(message)
        delay = min(self.options.backoff * 2 ** (recent - 1), self.options.backoff_cap)
        child.restart_at = now + delay
        log.warning("worker process %d (pid %d) exited (%s); restarting it in %.1f s",
                    child.index, process.pid, how, delay)
        return None

    def _stop_all(self) -> int:
        """SIGTERM to every child, wait for them; kill the ones past the deadline."""
        alive = [c.process for c in self._children if c.process is not None]
        for process in alive:
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGTERM)
        allowed = self.settings.worker.shutdown_timeout + EXIT_GRACE
        deadline = time.monotonic() + allowed
        code = 0
        for process in alive:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.exitcode is None:
                log.error("worker process pid %d did not stop within %g s; killing it",
                          process.pid, allowed)
                process.kill()
                process.join()
                code = 1
            elif process.exitcode != 0:
                log.warning("worker process pid %d stopped with %s", process.pid,
                            describe_exit(process.exitcode))
            self._forget_metrics(process.pid)
        for child in self._children:
            child.process = child.restart_at = None
        log.info("all worker processes stopped")
        return code

    # -- metrics --------------------------------------------------------------------

    def _start_metrics(self) -> None:
        if self.worker.metrics_port is None:
            return
        from prometheus_client import CollectorRegistry, multiprocess, start_http_server

        self._metrics_dir = tempfile.mkdtemp(prefix="queuekit-metrics-")
        # The children read it when they import prometheus_client (spawn: fresh imports).
        os.environ[_MULTIPROC_ENV] = self._metrics_dir
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(  # type: ignore[no-untyped-call]
            registry, path=self._metrics_dir)
        host, port = self.worker.metrics_host, self.worker.metrics_port
        try:
            self._metrics_server, _ = start_http_server(port, host, registry=registry)
        except OSError as exc:
            raise ConfigurationError(f"cannot serve metrics on {host}:{port}: {exc}; "
                                     "choose another --metrics-port") from exc
        log.info("metrics of all worker processes on http://%s:%d/metrics", host,
                 self._metrics_server.server_address[1])

    def _forget_metrics(self, pid: int | None) -> None:
        if self._metrics_dir is not None and pid is not None:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(pid, self._metrics_dir)  # type: ignore[no-untyped-call]

    def _close_metrics(self) -> None:
        if self._metrics_server is not None:
            self._metrics_server.shutdown()
            self._metrics_server.server_close()
        if self._metrics_dir is not None:
            if os.environ.get(_MULTIPROC_ENV) == self._metrics_dir:
                del os.environ[_MULTIPROC_ENV]
            shutil.rmtree(self._metrics_dir, ignore_errors=True)


def run_supervisor(settings: QueuekitSettings, open_host: HostFactory, worker: WorkerOptions,
                   options: SupervisorOptions) -> int:
    """``queuekit worker --processes N``: supervise until SIGTERM/SIGINT; the exit code.

    Raises :class:`WorkerError` when the children crash-loop or cannot start.
    """
    return Supervisor(settings, open_host, worker, options).run()
