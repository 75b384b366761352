"""``queuekit worker``: run the plugins' processors until SIGTERM/SIGINT.

Builds the application container, loads the plugins, starts one worker per queue that
the configuration enables here (``worker.enabled`` / ``worker.queues``, or ``--queues``)
through :func:`queuekit.runner.serve`, logs one line per job state change, optionally
serves Prometheus metrics, and shuts down gracefully.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from queuekit.errors import ConfigurationError
from queuekit.lifecycle import worker_enabled
from queuekit.metrics import MetricsServer, WorkerMetrics
from queuekit.plugins import PluginSet, effective_concurrency
from queuekit.processors import JobObserver, JobStateLogger, observe
from queuekit.runner import serve
from queuekit.service import Processor
from queuekit.settings import QueuekitSettings

log = logging.getLogger("queuekit.worker")


@dataclass(frozen=True)
class WorkerOptions:
    """What the command line adds to the configuration."""

    concurrency: int | None = None
    metrics_port: int | None = None
    metrics_host: str = "0.0.0.0"
    metrics_interval: float = 5.0


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
    options: WorkerOptions | None = None,
    *,
    stop: asyncio.Event | None = None,
    handle_signals: bool = True,
) -> None:
    """Serve the plugins' processors until a stop signal (or ``stop``), then close."""
    from containers.host import open_host  # the composition root, imported late

    options = options or WorkerOptions()
    if options.concurrency is not None and options.concurrency < 1:
        raise ConfigurationError(f"--concurrency must be >= 1, got {options.concurrency}")
    stop = stop or asyncio.Event()
    metrics_server: MetricsServer | None = None
    try:
        async with open_host(settings, lambda plugins: served_queues(settings, plugins)) \
                as host:
            queues = served_queues(settings, host.plugins)
            bindings = await host.processors(queues)
            observers: list[JobObserver] = [JobStateLogger(log)]
            metrics: WorkerMetrics | None = None
            if options.metrics_port is not None:
                metrics = WorkerMetrics()
                metrics.track(queues)
                observers.append(metrics)
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
