"""``queuekit worker --metrics-port``: Prometheus metrics scraped over HTTP and parsed."""

from __future__ import annotations

import asyncio
import socket
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from containers.host import open_host
from queuekit import JobState, QueueRegistry, RedisQueueService
from queuekit.runtime.runner import WorkerOptions, run_workers
from tests.conftest import SettingsFactory
from tests.support.configs import SAMPLE_PLUGIN
from tests.support.redis_server import free_port
from tests.support.sample_plugin import SAMPLE_QUEUE, SampleJobData
from tests.support.waiting import eventually

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(port: int) -> Samples:
    """Every sample of ``/metrics``, parsed by prometheus-client's own parser."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as response:
        text = response.read().decode()
    return {(sample.name, tuple(sorted(sample.labels.items()))): sample.value
            for family in text_string_to_metric_families(text) for sample in family.samples}


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


async def test_metrics_count_the_jobs_processed(make_settings: SettingsFactory) -> None:
    settings = make_settings(plugins=[SAMPLE_PLUGIN], worker={"drain_delay": 1.0})
    port = free_port()
    stop = asyncio.Event()
    options = WorkerOptions(metrics_port=port, metrics_host="127.0.0.1",
                            metrics_interval=0.05)
    worker = asyncio.ensure_future(run_workers(settings, open_host, options, stop=stop,
                                               handle_signals=False))
    registry = QueueRegistry()
    registry.register(SAMPLE_QUEUE, SampleJobData)
    qs = await RedisQueueService.connect(settings, registry)
    try:
        jobs = [await qs.add_job(SAMPLE_QUEUE, "multiply", {"userId": "u1", "number": n})
                for n in range(5)]
        for job in jobs:
            assert (await qs.wait_for_job(SAMPLE_QUEUE, job.id, timeout=20)).state \
                == JobState.COMPLETED

        async def probe() -> Samples:
            return await asyncio.to_thread(scrape, port)

        q = {"queue": SAMPLE_QUEUE}
        samples = await eventually(probe, lambda s: value(
            s, "queuekit_queue_jobs", queue=SAMPLE_QUEUE, state="completed") == 5)
        assert value(samples, "queuekit_jobs_completed_total", **q) == 5
        assert value(samples, "queuekit_job_duration_seconds_count", **q) == 5
        assert value(samples, "queuekit_jobs_failed_total", **q) == 0
        assert value(samples, "queuekit_queue_jobs", queue=SAMPLE_QUEUE, state="waiting") == 0
        duration = value(samples, "queuekit_job_duration_seconds_sum", **q)
        assert duration is not None and 0 < duration < 5

        failing = await qs.add_job(SAMPLE_QUEUE, "multiply",
                                   {"userId": "u1", "number": 1, "fail": True})
        assert (await qs.wait_for_job(SAMPLE_QUEUE, failing.id, timeout=20)).state \
            == JobState.FAILED
        samples = await eventually(probe, lambda s: value(
            s, "queuekit_queue_jobs", queue=SAMPLE_QUEUE, state="failed") == 1)
        assert value(samples, "queuekit_jobs_failed_total", **q) == 1
        assert value(samples, "queuekit_jobs_completed_total", **q) == 5
        assert value(samples, "queuekit_job_duration_seconds_count", **q) == 6
    finally:
        await qs.close()
        stop.set()
        await asyncio.wait_for(worker, timeout=20)

    # The metrics server is gone with the worker.
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=5).close()
