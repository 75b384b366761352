"""One trace across Node and Python: bullmq-otel on the Node side, queuekit.tracing here.

The Node scripts (``node/otel.mjs``) export their spans to memory and print them; the
Python side uses the SDK's in-memory exporter.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from queuekit import BankSyncJobData, JobContext, JobResult, JobState, RedisQueueService
from tests.conftest import SettingsFactory
from tests.interop.node_bullmq import NPM_TIMEOUT, NodeRunner
from tests.support.otel import span_exporter, spans_named, wait_for_spans

pytestmark = pytest.mark.timeout(NPM_TIMEOUT + 60)

QUEUE = "bank-sync"
SPAN_KIND_PRODUCER, SPAN_KIND_CONSUMER = 3, 4  # @opentelemetry/api's SpanKind numbers


@pytest.fixture
def exporter(monkeypatch: pytest.MonkeyPatch) -> InMemorySpanExporter:
    return span_exporter(monkeypatch)


@pytest.fixture(params=["fast", "bullmq"])
async def qs(request: pytest.FixtureRequest, make_settings: SettingsFactory,
             exporter: InMemorySpanExporter) -> AsyncIterator[RedisQueueService]:
    service = await RedisQueueService.connect(make_settings(worker={"engine": request.param}))
    yield service
    await service.close()


def wire(user: str) -> dict[str, str]:
    return {"userId": user, "accountId": "a1", "syncType": "incremental"}


async def test_a_node_producers_trace_continues_in_a_queuekit_worker(
        qs: RedisQueueService, node: NodeRunner, key_prefix: str,
        exporter: InMemorySpanExporter) -> None:
    producer = await node.start("otel.mjs", mode="produce", prefix=key_prefix, queue=QUEUE,
                                jobs=[{"name": "sync-transactions", "data": wire("u1")}])
    added = await producer.expect("added")
    assert await producer.wait(20) == 0
    [job] = added["jobs"]
    [node_add] = [s for s in added["spans"] if s["name"] == f"add {QUEUE}.sync-transactions"]
    assert node_add["kind"] == SPAN_KIND_PRODUCER
    assert isinstance(job["opts"]["telemetry"]["metadata"], str)  # what Node stored as tm

    async def process(ctx: JobContext[BankSyncJobData]) -> JobResult:
        return JobResult(success=True)

    qs.create_worker(QUEUE, process)
    info = await qs.wait_for_job(QUEUE, job["id"], timeout=15)
    assert info.state == JobState.COMPLETED
    [span] = await wait_for_spans(exporter, f"process {QUEUE}", 1)
    assert span.context is not None and span.parent is not None
    assert f"{span.context.trace_id:032x}" == node_add["traceId"]
    assert f"{span.parent.span_id:016x}" == node_add["spanId"]
    assert span.parent.is_remote


async def test_a_queuekit_producers_trace_continues_in_a_node_worker(
        qs: RedisQueueService, node: NodeRunner, key_prefix: str,
        exporter: InMemorySpanExporter) -> None:
    worker = await node.start("otel.mjs", mode="work", prefix=key_prefix, queue=QUEUE,
                              expect=2)
    await worker.expect("ready")
    single = await qs.add_job(QUEUE, "sync-transactions", wire("u1"))
    [bulk] = await qs.add_jobs(QUEUE, [("full-sync", wire("u2"))])
    spans = (await worker.expect("spans", timeout=30))["spans"]
    assert await worker.wait(20) == 0

    [add] = spans_named(exporter, f"add {QUEUE}.sync-transactions")
    [add_bulk] = spans_named(exporter, f"addBulk {QUEUE}")
    processed = {s["attributes"]["bullmq.job.id"]: s for s in spans
                 if s["name"] == f"process {QUEUE}"}
    assert set(processed) == {single.id, bulk.id}
    for job_id, producer in ((single.id, add), (bulk.id, add_bulk)):
        assert producer.context is not None
        node_span = processed[job_id]
        assert node_span["kind"] == SPAN_KIND_CONSUMER
        assert node_span["traceId"] == f"{producer.context.trace_id:032x}"
        assert node_span["parentSpanId"] == f"{producer.context.span_id:016x}"
