"""Prometheus metrics of a worker process (``queuekit worker --metrics-port``).

- ``queuekit_jobs_completed_total{queue}``: attempts whose processor returned;
- ``queuekit_jobs_failed_total{queue}``: attempts whose processor raised (retried or not);
- ``queuekit_job_duration_seconds{queue}``: a histogram of processing time, both outcomes;
- ``queuekit_queue_jobs{queue,state}``: jobs per state (waiting, active, delayed, ...),
  refreshed by a background task every few seconds;
- ``queuekit_job_schedulers{queue}``: job schedulers per queue, refreshed with the depths.

Counters and the histogram are updated in the worker's own coroutine (no I/O); the depth
refresh awaits the queue service like any other caller; the HTTP server runs in a thread
of its own. Nothing here blocks a worker.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Sequence
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, start_http_server

from queuekit.errors import ConfigurationError, QueuekitError
from queuekit.jobs import COUNT_STATES, JobContext
from queuekit.service import QueueService

log = logging.getLogger("queuekit.metrics")

#: Histogram buckets (seconds): from a quick notification to a long report.
DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                    60.0, 300.0)


class WorkerMetrics:
    """The metrics of one worker process, in their own registry; a :class:`JobObserver`."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.completed = Counter("queuekit_jobs_completed", "Job attempts that completed.",
                                 ["queue"], registry=self.registry)
        self.failed = Counter("queuekit_jobs_failed",
                              "Job attempts that failed (retried or not).", ["queue"],
                              registry=self.registry)
        self.duration = Histogram("queuekit_job_duration_seconds",
                                  "Seconds a processor took per attempt.", ["queue"],
                                  buckets=DURATION_BUCKETS, registry=self.registry)
        # Under a supervisor (multiprocess mode) every child reads the same depths: the
        # latest reading of a live one is the answer.
        self.depth = Gauge("queuekit_queue_jobs", "Jobs in the queue per state.",
                           ["queue", "state"], registry=self.registry,
                           multiprocess_mode="livemostrecent")
        self.schedulers = Gauge("queuekit_job_schedulers", "Job schedulers per queue.",
                                ["queue"], registry=self.registry,
                                multiprocess_mode="livemostrecent")

    def job_started(self, job: JobContext[Any]) -> None:
        """Nothing to count yet."""

    def job_completed(self, job: JobContext[Any], duration: float) -> None:
        """Count a completed attempt and its duration."""
        self.completed.labels(job.queue).inc()
        self.duration.labels(job.queue).observe(duration)

    def job_failed(self, job: JobContext[Any], error: BaseException, duration: float) -> None:
        """Count a failed attempt and its duration."""
        self.failed.labels(job.queue).inc()
        self.duration.labels(job.queue).observe(duration)

    def track(self, queues: Sequence[str]) -> None:
        """Export zeros for ``queues`` before their first job, so dashboards see them."""
        for queue in queues:
            self.completed.labels(queue)
            self.failed.labels(queue)
            self.duration.labels(queue)

    async def refresh_depth(self, service: QueueService, queues: Sequence[str]) -> None:
        """Read the job counts and scheduler counts of ``queues`` once, concurrently, into
        the depth and scheduler gauges."""
        counts = await asyncio.gather(*(service.get_job_counts(q) for q in queues))
        schedulers = await asyncio.gather(*(service.get_job_schedulers(q) for q in queues))
        for queue, by_state, found in zip(queues, counts, schedulers, strict=True):
            for state in COUNT_STATES:
                self.depth.labels(queue, state).set(by_state.get(state, 0))
            self.schedulers.labels(queue).set(len(found))

    async def refresh_forever(self, service: QueueService, queues: Sequence[str],
                              interval: float, stop: asyncio.Event) -> None:
        """Refresh the depth gauge every ``interval`` seconds until ``stop`` is set.

        A failed read (Redis away) is logged and retried on the next tick; the last known
        values stay exported.
        """
        while not stop.is_set():
            try:
                await self.refresh_depth(service, queues)
            except QueuekitError as exc:
                if stop.is_set() or service.closed:
                    return
                log.warning("queue depth not refreshed: %s", exc)
            try:
                await asyncio.wait_for(stop.wait(), interval)
            except TimeoutError:
                continue


class MetricsServer:
    """``/metrics`` over HTTP in a daemon thread; :meth:`close` stops it."""

    def __init__(self, metrics: WorkerMetrics, port: int, host: str = "0.0.0.0") -> None:
        try:
            server, thread = start_http_server(port, host, registry=metrics.registry)
        except OSError as exc:
            raise ConfigurationError(
                f"cannot serve metrics on {host}:{port}: {exc}; choose another "
                "--metrics-port"
            ) from exc
        self._server: WSGIServer = server
        self._thread: threading.Thread = thread
        self.port = int(server.server_address[1])
        log.info("metrics on http://%s:%d/metrics", host, self.port)

    def close(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)
