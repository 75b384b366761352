"""Run workers until SIGTERM/SIGINT, then shut down gracefully.

``serve`` starts one worker per queue on a started ``QueueService``, waits for a stop
signal (or a ``stop`` event), then closes the service: workers stop fetching, active jobs
get ``worker.shutdown_timeout`` seconds to finish, the rest are forced (their locks
expire and another worker re-runs them: nothing is lost).
"""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Mapping

from queuekit.service import Processor, QueueService, QueueWorker

log = logging.getLogger("queuekit.runner")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


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
