"""OpenTelemetry on every backend: a producer span per add, a consumer span per attempt,
children of the add's context carried in BullMQ's ``tm`` option."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from queuekit import (
    BankSyncJobData,
    JobContext,
    JobOptions,
    JobResult,
    JobState,
    QueueName,
    QueueService,
)
from tests.support.otel import span_exporter, spans_named, wait_for_spans

BANK = QueueName.BANK_SYNC
ServiceFactory = Callable[..., Awaitable[QueueService]]


@pytest.fixture
def exporter(monkeypatch: pytest.MonkeyPatch) -> InMemorySpanExporter:
    return span_exporter(monkeypatch)


def sync(user: str = "u1") -> BankSyncJobData:
    return BankSyncJobData(user_id=user, account_id="a1", sync_type="incremental")


async def ok(job: JobContext[BankSyncJobData]) -> JobResult:
    return JobResult(success=True)


async def test_consumer_span_is_a_child_of_the_producer_span(
        service_factory: ServiceFactory, exporter: InMemorySpanExporter) -> None:
    service = await service_factory()  # created after the provider: it traces
    job = await service.add_job(BANK, "sync-transactions", sync())
    service.create_worker(BANK, ok)
    info = await service.wait_for_job(BANK, job.id, timeout=10)
    assert info.state == JobState.COMPLETED

    [add] = spans_named(exporter, "add bank-sync.sync-transactions")
    [process] = await wait_for_spans(exporter, "process bank-sync", 1)
    assert add.kind == SpanKind.PRODUCER and process.kind == SpanKind.CONSUMER
    assert add.context is not None and process.context is not None
    assert process.context.trace_id == add.context.trace_id
    assert process.parent is not None and process.parent.span_id == add.context.span_id
    assert dict(add.attributes or {}) == {
        "bullmq.queue.name": "bank-sync", "bullmq.queue.operation": "add",
        "bullmq.job.name": "sync-transactions", "bullmq.job.id": job.id,
        "messaging.system": "bullmq", "messaging.destination.name": "bank-sync",
        "messaging.operation.type": "send", "messaging.operation.name": "add",
        "messaging.message.id": job.id,
    }
    attributes = dict(process.attributes or {})
    assert attributes["bullmq.job.id"] == attributes["messaging.message.id"] == job.id
    assert attributes["messaging.operation.type"] == "process"
    assert attributes["queuekit.job.attempt"] == 1
    assert attributes["queuekit.job.outcome"] == "completed"
    assert process.status.status_code != StatusCode.ERROR


async def test_each_attempt_has_its_span_with_the_error_recorded(
        service_factory: ServiceFactory, exporter: InMemorySpanExporter) -> None:
    service = await service_factory()

    async def flaky(job: JobContext[BankSyncJobData]) -> JobResult:
        if job.attempts_made < 2:
            raise RuntimeError(f"bank timeout on attempt {job.attempts_made + 1}")
        return JobResult(success=True)

    job = await service.add_job(BANK, "sync", sync(),
                                options=JobOptions(attempts=3, backoff=10))
    service.create_worker(BANK, flaky)
    info = await service.wait_for_job(BANK, job.id, timeout=15)
    assert info.state == JobState.COMPLETED

    [add] = spans_named(exporter, "add bank-sync.sync")
    spans = await wait_for_spans(exporter, "process bank-sync", 3)
    assert add.context is not None
    for span in spans:
        assert span.context is not None and span.parent is not None
        assert span.context.trace_id == add.context.trace_id
        assert span.parent.span_id == add.context.span_id
    assert [s.attributes["queuekit.job.attempt"] for s in spans if s.attributes] == [1, 2, 3]
    for number, span in enumerate(spans[:2], start=1):
        assert span.status.status_code == StatusCode.ERROR
        assert span.attributes is not None
        assert span.attributes["queuekit.job.outcome"] == "failed"
        assert span.attributes["bullmq.job.failed.reason"] == f"bank timeout on attempt {number}"
        [event] = span.events
        assert event.name == "exception" and event.attributes is not None
        assert event.attributes["exception.type"] == "RuntimeError"
    assert spans[2].status.status_code != StatusCode.ERROR


async def test_a_bulk_add_has_one_span_that_every_job_continues(
        service_factory: ServiceFactory, exporter: InMemorySpanExporter) -> None:
    service = await service_factory()
    jobs = await service.add_jobs(BANK, [("sync", sync("a")), ("full", sync("b"))])
    service.create_worker(BANK, ok)
    for job in jobs:
        await service.wait_for_job(BANK, job.id, timeout=10)
    [bulk] = spans_named(exporter, "addBulk bank-sync")
    assert bulk.kind == SpanKind.PRODUCER and bulk.attributes is not None
    assert bulk.attributes["bullmq.job.bulk.count"] == 2
    assert list(bulk.attributes["bullmq.job.bulk.names"]) == ["full", "sync"]  # type: ignore[arg-type]
    spans = await wait_for_spans(exporter, "process bank-sync", 2)
    assert bulk.context is not None
    assert {s.parent.span_id for s in spans if s.parent} == {bulk.context.span_id}


async def test_traced_adds_return_the_records_the_store_keeps(
        service_factory: ServiceFactory, exporter: InMemorySpanExporter) -> None:
    service = await service_factory()
    added = [await service.add_job(BANK, "sync", sync(f"u{i}")) for i in range(5)]
    added += await service.add_jobs(BANK, [("sync", sync(f"b{i}")) for i in range(5)])
    assert len(spans_named(exporter, "addBulk bank-sync")) == 1
    for job in added:  # created_at is the timestamp the job was written with
        assert await service.get_job(BANK, job.id) == job


async def test_the_context_is_stored_as_bullmq_otel_metadata(
        service_factory: ServiceFactory, exporter: InMemorySpanExporter,
        backend: str) -> None:
    """What a Node worker with bullmq-otel reads: ``tm``, a JSON string of the carrier."""
    service = await service_factory()
    job = await service.add_job(BANK, "sync", sync())
    [add] = spans_named(exporter, "add bank-sync.sync")
    assert add.context is not None
    if backend == "memory":
        metadata = service.queue_store(BANK).jobs[job.id].trace_metadata  # type: ignore[attr-defined]
    else:
        client = service.connection.client  # type: ignore[attr-defined]
        opts = json.loads(await client.hget(f"{service.settings.redis.prefix}:{BANK}:{job.id}",
                                            "opts"))
        metadata = opts["tm"]
    assert isinstance(metadata, str)
    traceparent = json.loads(metadata)["traceparent"]
    # version-trace id-parent id-flags (sampled; the SDK may add the random-id bit)
    assert traceparent[:-3] == f"00-{add.context.trace_id:032x}-{add.context.span_id:016x}"
    assert int(traceparent[-2:], 16) & 1


async def test_a_flow_has_one_add_flow_span_that_every_node_continues(
        service_factory: ServiceFactory, exporter: InMemorySpanExporter) -> None:
    from queuekit import FlowJob

    service = await service_factory()
    report = {"userId": "u1", "reportType": "monthly", "startDate": "2026-01-01",
              "endDate": "2026-01-31"}
    node = await service.add_flow(FlowJob(
        queue=QueueName.REPORTS, name="monthly", data=report,
        children=[FlowJob(queue=BANK, name="sync", data=sync("a")),
                  FlowJob(queue=BANK, name="sync", data=sync("b"))]))
    service.create_worker(BANK, ok)
    service.create_worker(QueueName.REPORTS, ok)
    await service.wait_for_job(QueueName.REPORTS, node.job.id, timeout=15)
    [flow] = spans_named(exporter, "addFlow reports")
    assert flow.kind == SpanKind.PRODUCER and flow.context is not None
    assert (flow.attributes or {})["bullmq.job.bulk.count"] == 3
    spans = [*await wait_for_spans(exporter, "process bank-sync", 2),
             *await wait_for_spans(exporter, "process reports", 1)]
    assert {s.context.trace_id for s in spans if s.context} == {flow.context.trace_id}
    assert {s.parent.span_id for s in spans if s.parent} == {flow.context.span_id}


async def test_scheduler_runs_continue_the_upsert_span(
        service_factory: ServiceFactory, exporter: InMemorySpanExporter) -> None:
    service = await service_factory()
    await service.upsert_job_scheduler(BANK, "traced", every=60_000, name="sync",
                                       data=sync())
    [upsert] = spans_named(exporter, "add bank-sync.sync")
    assert upsert.kind == SpanKind.PRODUCER and upsert.context is not None
    assert (upsert.attributes or {})["bullmq.job.scheduler.id"] == "traced"
    service.create_worker(BANK, ok)
    [first] = await wait_for_spans(exporter, "process bank-sync", 1)  # the immediate run
    assert first.context is not None and first.parent is not None
    assert first.context.trace_id == upsert.context.trace_id
    assert first.parent.span_id == upsert.context.span_id
