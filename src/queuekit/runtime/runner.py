"""Running workers: until SIGTERM/SIGINT, then a graceful shutdown.

Two entry points, one above the other:

- :func:`serve` runs a worker per queue on a started ``QueueService``, waits for a stop
  signal (or a ``stop`` event), then closes the service: workers stop fetching, active
  jobs get ``worker.shutdown_timeout`` seconds to finish, the rest are forced (their
  locks expire and another worker re-runs them: nothing is lost).
- :func:`run_workers` is ``queuekit worker``: it opens a plugin host, builds the plugins'
  processors for the queues this process runs (``worker.enabled`` / ``worker.queues``),
  adds the state log lines and metrics, and calls :func:`serve`.

:func:`worker_resource` is the same lifetime as an async resource, for a container.
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass

from queuekit.errors import ConfigurationError
from queuekit.processors import JobObserver, JobStateLogger, Processor, observe
from queuekit.runtime.host import HostFactory
from queuekit.runtime.metrics import MetricsServer, WorkerMetrics
from queuekit.runtime.plugins import PluginSet, effective_concurrency
from queuekit.service import QueueService
from queuekit.settings import QueuekitSettings
from queuekit.worker import QueueWorker

log = logging.getLogger("queuekit.runner")
state_log = logging.getLogger("queuekit.worker")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def worker_enabled(settings: QueuekitSettings, queue: str) -> bool:
    """Whether this process runs a worker for ``queue`` (``worker.enabled``/``queues``)."""
    if not settings.worker.enabled:
        return False
    return settings.worker.queues is None or str(queue) in settings.worker.queues


def start_workers(service: QueueService, processors: Mapping[str, Processor],
                  concurrency: Mapping[str, int] | None = None) -> dict[str, QueueWorker]:
    """Create a worker for each queue in ``processors``."""
    concurrency = concurrency or {}
    return {
        str(queue): service.create_worker(queue, processor,
                                          concurrency=concurrency.get(str(queue)))
        for queue, processor in processors.items()
    }


async def serve(
    service: QueueService,
    processors: Mapping[str, Processor],
    *,
    concurrency: Mapping[str, int] | None = None,
    stop: asyncio.Event | None = None,
    handle_signals: bool = True,
) -> None:
    """Run workers for ``processors`` until a stop signal, then close ``service``."""
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    if handle_signals:
        for sig in STOP_SIGNALS:
            def on_signal(sig: signal.Signals = sig) -> None:
                if not stop.is_set():
                    log.info("received %s; shutting down gracefully", sig.name)
                stop.set()

            loop.add_signal_handler(sig, on_signal)
            installed.append(sig)
    try:
        workers = start_workers(service, processors, concurrency)
        log.info("serving %s", ", ".join(sorted(workers)) or "no queues")
        await stop.wait()
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)
        await service.close()
        log.info("all workers stopped")


async def worker_resource(
    queue_service: QueueService,
    queue: str,
    processor: Processor,
    concurrency: int | None = None,
) -> AsyncIterator[QueueWorker | None]:
    """A worker on ``queue`` while the resource is open (None when disabled here)."""
    if not worker_enabled(queue_service.settings, queue):
        log.info("worker for %s disabled in this process", queue, extra={"queue": str(queue)})
        yield None
        return
    worker = queue_service.create_worker(queue, processor, concurrency=concurrency)
    try:
        yield worker
    finally:
        await worker.close(queue_service.settings.worker.shutdown_timeout)


@dataclass(frozen=True)
class WorkerOptions:
    """What the command line adds to the configuration."""

    concurrency: int | None = None
    metrics_port: int | None = None
    metrics_host: str = "0.0.0.0"
    metrics_interval: float = 5.0
    #: False: count metrics but serve none here (a supervisor serves every process's).
    metrics_server: bool = True


def served_queues(settings: QueuekitSettings, plugins: PluginSet) -> list[str]:
    """The queues this process runs workers for; :class:`ConfigurationError` when none, or
    when ``worker.queues`` names a queue no plugin processes."""
    if not settings.worker.enabled:
        raise ConfigurationError(
            "worker.enabled is false in this configuration, so this process may run no "
            "worker; set worker.enabled: true (QUEUEKIT_WORKER__ENABLED=true)"
        )
    available = plugins.processor_queues()
    unknown = sorted(set(settings.worker.queues or ()) - set(available))
    if unknown:
        raise ConfigurationError(
            f"no plugin provides a processor for {', '.join(map(repr, unknown))} "
            f"(--queues / worker.queues); queues with processors: "
            f"{', '.join(available) or 'none'} (plugins: {', '.join(plugins.names) or 'none'})"
        )
    queues = [queue for queue in available if worker_enabled(settings, queue)]
    if not queues:
        raise ConfigurationError(
            "no processors to run: name a plugin module in the configuration's `plugins:` "
            "(QUEUEKIT_PLUGINS) or install one under the entry-point group queuekit.plugins"
        )
    return queues


async def run_workers(
    settings: QueuekitSettings,
    open_host: HostFactory,
    options: WorkerOptions | None = None,
    *,
    stop: asyncio.Event | None = None,
    handle_signals: bool = True,
) -> None:
    """Serve the plugins' processors until a stop signal (or ``stop``), then close."""
    options = options or WorkerOptions()
    if options.concurrency is not None and options.concurrency < 1:
        raise ConfigurationError(f"--concurrency must be >= 1, got {options.concurrency}")
    stop = stop or asyncio.Event()
    metrics_server: MetricsServer | None = None
    try:
        async with open_host(settings, lambda plugins: served_queues(settings, plugins)) \
                as host:
            queues = served_queues(settings, host.plugins)
            await host.get("declared_schedules")  # upserted before the first worker runs
            bindings = await host.processors(queues)
            observers: list[JobObserver] = [JobStateLogger(state_log)]
            metrics: WorkerMetrics | None = None
            if options.metrics_port is not None:
                metrics = WorkerMetrics()
                metrics.track(queues)
                observers.append(metrics)
                if options.metrics_server:
                    metrics_server = MetricsServer(metrics, options.metrics_port,
                                                   options.metrics_host)
            processors: dict[str, Processor] = {
                b.queue: observe(b.processor, observers) for b in bindings}
            concurrency = {b.queue: effective_concurrency(settings, b.queue, b.concurrency,
                                                          options.concurrency)
                           for b in bindings}
            for binding in bindings:
                log.info("%s: processor %s of plugin %s", binding.queue, binding.name,
                         binding.plugin, extra={"queue": binding.queue})
            refresher = None
            if metrics is not None:
                refresher = asyncio.ensure_future(metrics.refresh_forever(
                    host.service, queues, options.metrics_interval, stop))
            try:
                await serve(host.service, processors, concurrency=concurrency, stop=stop,
                            handle_signals=handle_signals)
            finally:
                stop.set()
                if refresher is not None:
                    await refresher
    finally:
        if metrics_server is not None:
            metrics_server.close()
